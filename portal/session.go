package portal

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/httpadapter"
	"github.com/txcloud/keys/limit"
)

const (
	sessionCookie = "portal_session"
	csrfCookie    = "portal_csrf"
	// maxCookieLen bounds what is decoded and checked of a cookie.
	maxCookieLen = 1024
	// refreshAfter: a session's last-seen time is written again (a new
	// cookie) at most this often.
	refreshAfter = time.Minute
)

// session is what the session cookie holds: no secret, only who signed
// in with which key, and when.
type session struct {
	ID      string `json:"s"` // random: sign-out ends this one session
	Account string `json:"a"`
	KeyID   string `json:"k"`
	Issued  int64  `json:"i"` // Unix seconds
	Seen    int64  `json:"t"`
}

// visit is one signed-in request: the principal, what acts for it, and
// the CSRF token its forms carry.
type visit struct {
	p       keys.Principal
	as      keys.Scoped
	csrf    string
	session *session // nil with Config.Principal
}

// errEnded is a key session that no longer holds, with why, in words.
type errEnded struct{ why string }

func (e errEnded) Error() string { return e.why }

// signedIn runs h for a signed-in visitor: the host's principal, or a key
// session that still holds. Anyone else is sent to sign in. Posts are
// checked for their origin and CSRF token first; every page against the
// account's limits (reads: ReadLimit too).
func (p *Portal) signedIn(reads bool, h func(http.ResponseWriter, *http.Request, *visit)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			if err := p.cop.Check(r); err != nil {
				p.forbidden(w, r)
				return
			}
		}
		v, err := p.visitor(w, r)
		switch {
		case errors.Is(err, keys.ErrUnavailable):
			p.fault(w, r, err)
			return
		case err != nil && p.c.Principal != nil:
			if p.c.SignInURL != "" {
				http.Redirect(w, r, p.c.SignInURL, http.StatusSeeOther)
				return
			}
			p.render(w, r, http.StatusUnauthorized, "message", nil, message{Title: "Sign in", Text: "Sign in to see this page."})
			return
		case err != nil:
			p.clearCookie(w, r, sessionCookie)
			q := ""
			var ended errEnded
			if errors.As(err, &ended) {
				q = "?ended=" + ended.why
			}
			http.Redirect(w, r, p.c.Path+"/sign-in"+q, http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost && !p.validCSRF(r, v.csrf) {
			p.forbidden(w, r)
			return
		}
		// The HTTP API's rules: reading needs developers:read, any change
		// developers:write.
		need := httpadapter.PermissionReadKeys
		if r.Method == http.MethodPost && r.URL.Path != p.c.Path+"/sign-out" {
			need = httpadapter.PermissionManageKeys
		}
		if !v.p.Has(need) {
			p.render(w, r, http.StatusForbidden, "message", v, message{Title: "Not allowed", Text: "You need the " + need + " permission for this."})
			return
		}
		if err := p.allow(r, v.p.AccountID, reads); err != nil {
			p.failed(w, r, v, err)
			return
		}
		h(w, r, v)
	})
}

// allow counts a page against the account's management limit, and a
// read against ReadLimit, in the Manager's limiter (shared by instances
// when it is).
func (p *Portal) allow(r *http.Request, account string, reads bool) error {
	checks := limit.Checks{{Name: limit.Management, ID: account, Max: httpadapter.DefaultManagementLimit}}
	if reads {
		checks[1] = limit.Check{Name: limit.Management, ID: account, Route: "portal reads", Max: ReadLimit}
	}
	st, ok, err := p.m.Limiter().Allow(r.Context(), checks, p.now())
	switch {
	case err != nil:
		return fmt.Errorf("%w: %w", keys.ErrUnavailable, err)
	case !ok:
		return &keys.RateLimitError{RateLimit: st}
	}
	return nil
}

// visitor is the request's principal, with a fresh CSRF cookie if it had
// none.
func (p *Portal) visitor(w http.ResponseWriter, r *http.Request) (*visit, error) {
	if p.c.Principal != nil {
		pr, err := p.c.Principal(r)
		if err != nil {
			return nil, err
		}
		if pr.AccountID == "" {
			return nil, errors.New("no principal")
		}
		v := &visit{p: pr, as: p.m.As(pr)}
		v.csrf = p.csrfToken(w, r, "host\x00"+pr.AccountID+"\x00"+pr.Subject)
		return v, nil
	}
	s, err := p.readSession(r)
	if err != nil {
		return nil, err
	}
	now := p.now()
	switch {
	case now.Sub(time.Unix(s.Issued, 0)) >= MaxSessionAge:
		return nil, errEnded{"expired"}
	case now.Sub(time.Unix(s.Seen, 0)) >= IdleTimeout:
		return nil, errEnded{"idle"}
	}
	ended, err := p.m.Marked(r.Context(), endMark(s.ID))
	if err != nil {
		return nil, err
	}
	if ended {
		return nil, errEnded{"signed-out"}
	}
	// The key's state now, not at sign-in: revoked, disabled, expired,
	// past its roll's grace (revoked), out of a developers permission:
	// the session is over. Retiring (a roll's grace) still holds.
	k, err := p.m.As(keys.Principal{AccountID: s.Account, Subject: s.KeyID}).Get(r.Context(), s.KeyID)
	switch {
	case errors.Is(err, keys.ErrNotFound):
		return nil, errEnded{"key"}
	case err != nil:
		return nil, err
	}
	switch status := keyStatus(k, now); status {
	case "revoked", "expired", "disabled":
		return nil, errEnded{status}
	}
	pr := keys.Principal{AccountID: s.Account, Subject: s.KeyID, Environment: k.Environment, Permissions: k.Permissions}
	if !pr.Has(httpadapter.PermissionReadKeys) || !pr.Has(httpadapter.PermissionManageKeys) {
		return nil, errEnded{"permissions"}
	}
	if now.Sub(time.Unix(s.Seen, 0)) >= refreshAfter {
		s.Seen = now.Unix()
		p.setSession(w, r, s)
	}
	v := &visit{p: pr, as: p.m.As(pr), session: s}
	v.csrf = p.csrfToken(w, r, "key\x00"+s.ID)
	return v, nil
}

// endMark is the mark (keys.Manager.Deduplicate) of an ended session.
func endMark(id string) [32]byte {
	return sha256.Sum256([]byte("txcloud keys portal: session ended\x00" + id))
}

func (p *Portal) sign(key []byte, parts ...string) string {
	mac := hmac.New(sha256.New, key)
	for _, s := range parts {
		mac.Write([]byte(s))
		mac.Write([]byte{0})
	}
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func (p *Portal) setSession(w http.ResponseWriter, r *http.Request, s *session) {
	b, _ := json.Marshal(s)
	payload := base64.RawURLEncoding.EncodeToString(b)
	p.setCookie(w, r, sessionCookie, payload+"."+p.sign(p.sessionKey, payload))
}

var errNoSession = errors.New("no session")

func (p *Portal) readSession(r *http.Request) (*session, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || len(c.Value) > maxCookieLen {
		return nil, errNoSession
	}
	payload, mac, ok := strings.Cut(c.Value, ".")
	if !ok || !hmac.Equal([]byte(mac), []byte(p.sign(p.sessionKey, payload))) {
		return nil, errNoSession // another secret's, or altered
	}
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return nil, errNoSession
	}
	var s session
	if err := json.Unmarshal(b, &s); err != nil || s.ID == "" || s.Account == "" || s.KeyID == "" {
		return nil, errNoSession
	}
	return &s, nil
}

// csrfToken is the token of the forms shown to binding (a session, or
// the host's principal): an HMAC of the visitor's CSRF cookie, set here
// when missing.
func (p *Portal) csrfToken(w http.ResponseWriter, r *http.Request, binding string) string {
	c, err := r.Cookie(csrfCookie)
	val := ""
	if err == nil && madeByUs(c.Value) {
		val = c.Value
	} else {
		val = randomID()
		p.setCookie(w, r, csrfCookie, val) // a post in this request has no valid token: it had no cookie
	}
	return p.sign(p.csrfKey, val, binding)
}

// validCSRF reports whether the post's csrf field is the token of the
// visitor's cookie. A post without the cookie has no valid token.
func (p *Portal) validCSRF(r *http.Request, want string) bool {
	if _, err := r.Cookie(csrfCookie); err != nil {
		return false
	}
	r.Body = http.MaxBytesReader(nil, r.Body, maxFormBytes)
	got := r.PostFormValue("csrf")
	return got != "" && hmac.Equal([]byte(got), []byte(want))
}

// maxFormBytes bounds a form's body.
const maxFormBytes = 64 << 10

func (p *Portal) setCookie(w http.ResponseWriter, r *http.Request, name, val string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: val, Path: p.c.Path, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: !loopback(r.Host)})
}

func (p *Portal) clearCookie(w http.ResponseWriter, r *http.Request, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: p.c.Path, MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: !loopback(r.Host)})
}

// loopback reports whether host (a Host header) names this machine:
// only there may a cookie go without Secure (plain http on localhost).
// A proxy that passes the public Host keeps Secure on.
func loopback(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// madeByUs reports whether s could be a randomID: a form's idempotency
// key or a CSRF cookie is nothing else.
func madeByUs(s string) bool {
	b, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil && len(b) == 32
}

// formNonce reads the nonce of a form that creates or rolls and returns
// it with the idempotency key it makes. A nonce the portal did not make
// (a script's, or none) would not make the post idempotent: it is
// answered with a 403 here, and ok is false.
func (p *Portal) formNonce(w http.ResponseWriter, r *http.Request) (nonce string, idem keys.IssueOption, ok bool) {
	nonce = r.PostFormValue("nonce")
	if !madeByUs(nonce) {
		p.forbidden(w, r)
		return "", keys.IssueOption{}, false
	}
	return nonce, keys.IdempotencyKey("portal_" + nonce), true
}

// randomID is 32 bytes from crypto/rand, base64url without padding.
func randomID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand's contract since Go 1.24)
	return base64.RawURLEncoding.EncodeToString(b)
}

// signInForm shows the sign-in form.
func (p *Portal) signInForm(w http.ResponseWriter, r *http.Request) {
	var note string
	switch r.URL.Query().Get("ended") {
	case "signed-out":
		note = "You are signed out."
	case "idle":
		note = "Your session ended after 30 minutes without activity. Sign in again."
	case "expired":
		note = "Your session has ended. Sign in again."
	case "revoked", "disabled", "key", "permissions":
		note = "Your session ended: the key you signed in with is no longer valid for the portal."
	}
	p.render(w, r, http.StatusOK, "signin", nil, signInPage{CSRF: p.csrfToken(w, r, "sign-in"), Note: note})
}

type signInPage struct {
	CSRF, Note, Error string
}

// signIn exchanges a key for a session: the key is verified as any
// request's (checksum, the store's forged-key guard, allowed IPs, rate
// limit) and must hold developers:write.
func (p *Portal) signIn(w http.ResponseWriter, r *http.Request) {
	if !p.validCSRF(r, p.csrfToken(w, r, "sign-in")) {
		p.forbidden(w, r)
		return
	}
	key := strings.TrimSpace(r.PostFormValue("key"))
	v, err := p.m.Verify(r.Context(), key, keys.FromIP(p.clientIP(r)), keys.Require(httpadapter.PermissionReadKeys, httpadapter.PermissionManageKeys), keys.OutsidePlan())
	if err != nil {
		if errors.Is(err, keys.ErrUnavailable) {
			p.fault(w, r, err)
			return
		}
		status := http.StatusUnauthorized
		if errors.Is(err, keys.ErrRateLimited) {
			status = http.StatusTooManyRequests
		}
		p.render(w, r, status, "signin", nil, signInPage{CSRF: p.csrfToken(w, r, "sign-in"), Error: signInError(err)})
		return
	}
	now := p.now().Unix()
	p.setSession(w, r, &session{ID: randomID(), Account: v.AccountID, KeyID: v.KeyID, Issued: now, Seen: now})
	http.Redirect(w, r, p.c.Path+"/keys", http.StatusSeeOther)
}

func signInError(err error) string {
	switch {
	case errors.Is(err, keys.ErrKeyRevoked):
		return "This key has been revoked."
	case errors.Is(err, keys.ErrKeyExpired):
		return "This key has expired."
	case errors.Is(err, keys.ErrKeyDisabled):
		return "This key is disabled."
	case errors.Is(err, keys.ErrIPNotAllowed):
		return "This key may not be used from your address."
	case errors.Is(err, keys.ErrPermissionDenied):
		return "This key lacks the developers:read and developers:write permissions the portal needs."
	case errors.Is(err, keys.ErrRateLimited):
		return "This key is over its rate limit. Try again in a minute."
	default:
		return "That is not a valid API key."
	}
}

// signOut ends the session on every instance (its mark outlives any
// cookie of it) and clears the cookie.
func (p *Portal) signOut(w http.ResponseWriter, r *http.Request, v *visit) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
	defer cancel()
	if _, _, err := p.m.Deduplicate(ctx, endMark(v.session.ID), MaxSessionAge); err != nil {
		p.fault(w, r, err)
		return
	}
	p.clearCookie(w, r, sessionCookie)
	http.Redirect(w, r, p.c.Path+"/sign-in?ended=signed-out", http.StatusSeeOther)
}
