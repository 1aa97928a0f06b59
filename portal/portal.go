// Package portal serves the developer portal: the pages on which a
// provider's customers manage their own API keys and read their usage,
// request logs and webhooks in a browser, from the host's own process.
//
// A host mounts one handler:
//
//	p, err := portal.New(m, portal.Config{Secret: secret})
//	mux.Handle("/portal/", p)
//
// The pages are rendered on the server (html/template); the stylesheet and
// the one small script (the copy button) are embedded in the binary and
// served by the handler, so nothing comes from another origin and there is
// no build step. Every action works without JavaScript.
//
// Who is signed in is the host's decision. With Config.Principal the host
// names the principal of a request from its own session. Without it, a
// customer signs in with an API key holding developers:write, verified as
// any request is (its checksum, the store's guard against forged keys, its
// allowed IPs and rate limit); the portal keeps a session cookie holding the
// key's ID, never the key, signed with a key derived from Config.Secret, so
// every instance with the same secret accepts it. A session ends when its
// key is revoked, disabled or expires (a rolled key at the end of its grace
// period), after IdleTimeout without a request, after MaxSessionAge in all,
// and at sign-out, on every instance at once.
//
// Every action goes through the Manager acting for the principal
// (keys.Manager.As), with the rules of the HTTP API: a customer sees and
// changes only its own account's keys (any other ID is "not found"), grants
// no permission it lacks, and reads its errors in words.
//
// Every form carries a CSRF token, checked on every state-changing request
// (403 without it); Go's http.CrossOriginProtection refuses cross-origin
// posts as well. Forms that create a key or an endpoint carry an idempotency
// key, so a resubmitted form never creates a second one, and a secret is
// shown only on the answer that created it (Cache-Control: no-store on every
// page). The Content-Security-Policy allows no inline script or style and no
// framing.
package portal

import (
	"crypto/hkdf"
	"crypto/sha256"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/httpadapter"
)

// IdleTimeout ends a key session after this long without a request;
// MaxSessionAge ends it this long after sign-in, however active.
const (
	IdleTimeout   = 30 * time.Minute
	MaxSessionAge = 12 * time.Hour
)

// ReadLimit is how many usage and log pages an account may load a minute,
// all its customers together (the HTTP API's usage reads have the same
// default, httpadapter.DefaultUsageReadLimit); every page besides counts
// against the account's management limit, shared with the API's key
// endpoints (httpadapter.DefaultManagementLimit).
const ReadLimit = httpadapter.DefaultUsageReadLimit

// MinSecretLen is the shortest Config.Secret New accepts.
const MinSecretLen = 32

// Config configures a Portal. Secret is required.
type Config struct {
	// Path is where the portal is mounted, without a trailing slash; ""
	// is "/portal". The handler serves Path and everything under it.
	Path string
	// Secret signs session cookies and CSRF tokens: at least MinSecretLen
	// random bytes, the same on every instance (a cookie signed under
	// another secret is refused), kept like a password.
	Secret []byte
	// Principal, if set, names who a request comes from, from the host's
	// own session: the portal then has no sign-in form and no session of
	// its own. An error (or a principal without an AccountID) means
	// nobody: the visitor is sent to SignInURL, or answered 401.
	// keys.ErrUnavailable is a 503.
	Principal func(*http.Request) (keys.Principal, error)
	// SignInURL is where Principal's visitors sign in; only with Principal.
	SignInURL string
	// ClientIP is the address a request comes from, for the allowed_ips
	// of the key a customer signs in with; nil: the peer's address. Give
	// httpadapter.Adapter.ClientIP behind a trusted proxy.
	ClientIP func(*http.Request) netip.Addr
	// Logger receives the portal's server faults; nil: slog.Default().
	Logger *slog.Logger
}

// Portal is the developer portal's http.Handler. It is safe for
// concurrent use.
type Portal struct {
	m          *keys.Manager
	c          Config
	sessionKey []byte // signs session cookies
	csrfKey    []byte // signs CSRF tokens
	pages      map[string]*template.Template
	static     http.Handler
	mux        *http.ServeMux
	cop        *http.CrossOriginProtection
	now        func() time.Time
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// New returns the portal of m. It refuses a missing or short Secret, and
// a SignInURL without Principal (it would do nothing).
func New(m *keys.Manager, c Config) (*Portal, error) {
	if m == nil {
		return nil, errors.New("portal: a nil Manager")
	}
	if len(c.Secret) < MinSecretLen {
		return nil, errors.New("portal: Config.Secret must be at least 32 bytes")
	}
	if c.SignInURL != "" && c.Principal == nil {
		return nil, errors.New("portal: Config.SignInURL is only for a host that gives Config.Principal")
	}
	if c.Path == "" {
		c.Path = "/portal"
	}
	if !strings.HasPrefix(c.Path, "/") || strings.HasSuffix(c.Path, "/") || strings.ContainsAny(c.Path, "{}? #") {
		return nil, errors.New(`portal: Config.Path must start with "/" and not end with one, as "/portal"`)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	p := &Portal{m: m, c: c, now: time.Now, cop: http.NewCrossOriginProtection()}
	var err error
	if p.sessionKey, err = hkdf.Key(sha256.New, c.Secret, nil, "txcloud keys portal session v1", 32); err != nil {
		return nil, err
	}
	if p.csrfKey, err = hkdf.Key(sha256.New, c.Secret, nil, "txcloud keys portal csrf v1", 32); err != nil {
		return nil, err
	}
	if p.pages, err = parsePages(); err != nil {
		return nil, err
	}
	sub, _ := fs.Sub(staticFS, "static")
	files := http.StripPrefix(c.Path+"/static/", http.FileServerFS(sub))
	p.static = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") { // files only: no listing
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(w, r)
	})
	p.routes()
	return p, nil
}

// ServeHTTP serves the portal's pages, forms and assets.
func (p *Portal) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	if !strings.HasPrefix(r.URL.Path, p.c.Path+"/static/") {
		// Every page shows an account's data, and some a secret: none
		// is kept by the browser or a proxy.
		h.Set("Cache-Control", "no-store")
	}
	p.mux.ServeHTTP(w, r)
}

func (p *Portal) routes() {
	mux := http.NewServeMux()
	base := p.c.Path
	// Every page counts against the account's management limit, which
	// the HTTP API's key endpoints share; the usage and log pages, whose
	// reads hold the Manager's usage lock or scan the log, also against
	// a read limit of their own.
	page := func(pattern string, h func(http.ResponseWriter, *http.Request, *visit)) {
		mux.Handle(strings.Replace(pattern, " /", " "+base+"/", 1), p.signedIn(false, h))
	}
	reads := func(pattern string, h func(http.ResponseWriter, *http.Request, *visit)) {
		mux.Handle(strings.Replace(pattern, " /", " "+base+"/", 1), p.signedIn(true, h))
	}
	mux.Handle("GET "+base+"/static/", p.static)
	mux.HandleFunc("GET "+base+"/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, base+"/keys", http.StatusSeeOther)
	})
	mux.HandleFunc("GET "+base, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, base+"/keys", http.StatusSeeOther)
	})
	if p.c.Principal == nil {
		mux.HandleFunc("GET "+base+"/sign-in", p.signInForm)
		mux.Handle("POST "+base+"/sign-in", p.cop.Handler(http.HandlerFunc(p.signIn)))
		page("POST /sign-out", p.signOut)
	}
	page("GET /keys", p.keyList)
	page("GET /keys/new", p.keyNew)
	page("POST /keys", p.keyCreate)
	page("GET /keys/{id}", p.keyShow)
	page("POST /keys/{id}", p.keyEdit)
	page("POST /keys/{id}/enable", p.keyEnable)
	page("POST /keys/{id}/disable", p.keyDisable)
	page("GET /keys/{id}/revoke", p.keyRevokeConfirm)
	page("POST /keys/{id}/revoke", p.keyRevoke)
	page("POST /keys/{id}/roll", p.keyRoll)
	reads("GET /usage", p.usagePage)
	reads("GET /logs", p.logList)
	reads("GET /logs/{request_id}", p.logShow)
	page("GET /webhooks", p.webhookList)
	page("GET /webhooks/new", p.webhookNew)
	page("POST /webhooks", p.webhookCreate)
	page("GET /webhooks/{id}", p.webhookShow)
	page("POST /webhooks/{id}/test", p.webhookTest)
	page("POST /webhooks/{id}/enable", p.webhookEnable)
	page("POST /webhooks/{id}/disable", p.webhookDisable)
	page("POST /webhooks/{id}/roll-secret", p.webhookRollSecret)
	page("GET /webhooks/{id}/delete", p.webhookDeleteConfirm)
	page("POST /webhooks/{id}/delete", p.webhookDelete)
	page("POST /webhooks/{id}/deliveries/{delivery_id}/retry", p.webhookRetry)
	mux.HandleFunc(base+"/", func(w http.ResponseWriter, r *http.Request) {
		p.render(w, r, http.StatusNotFound, "message", nil, message{Title: "Not found", Text: "There is no such page."})
	})
	p.mux = mux
}

// clientIP is the request's client address (Config.ClientIP, or the peer).
func (p *Portal) clientIP(r *http.Request) netip.Addr {
	if p.c.ClientIP != nil {
		return p.c.ClientIP(r)
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
