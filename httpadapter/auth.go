package httpadapter

import (
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/internal/clientip"
)

// maxTokenLen: anything longer is no key of ours, and is refused before any
// work is spent on it.
const maxTokenLen = 256

// BearerToken returns the token of the request's one Authorization header,
// "Bearer <token>" (scheme case-insensitive, RFC 7235). A missing header,
// two headers, another scheme, or a token that is empty, too long or has
// characters outside RFC 6750's b64token is an error. Keys are never read
// from the URL: query strings end up in logs and browser history.
func BearerToken(r *http.Request) (string, error) {
	vals := r.Header.Values("Authorization")
	switch len(vals) {
	case 0:
		return "", errNoCredentials
	case 1:
	default:
		return "", errBadAuthHeader
	}
	return parseBearer(vals[0])
}

func parseBearer(v string) (string, error) {
	scheme, token, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", errBadAuthHeader
	}
	token = strings.TrimLeft(token, " ")
	if token == "" || len(token) > maxTokenLen {
		return "", errBadAuthHeader
	}
	for i := 0; i < len(token); i++ {
		if !b64Token[token[i]] {
			return "", errBadAuthHeader
		}
	}
	return token, nil
}

// b64Token marks RFC 6750's token characters: ALPHA / DIGIT / "-" / "." /
// "_" / "~" / "+" / "/" / "=".
var b64Token = func() (t [256]bool) {
	for c := range 256 {
		t[c] = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~+/=", byte(c)) >= 0
	}
	return t
}()

// clientIP is the address a request comes from: see clientip.Resolve. The
// forwarding header is X-Forwarded-For, or RFC 7239 Forwarded with
// WithForwardedHeader.
func (c *config) clientIP(r *http.Request) netip.Addr {
	return clientip.Resolve(clientip.ParseHostPort(r.RemoteAddr), c.trusted, func() []string {
		if c.forwardedHeader {
			return forwardedFor(r.Header.Values("Forwarded"))
		}
		return clientip.List(r.Header.Values("X-Forwarded-For"))
	})
}

// forwardedFor lists the for= values of RFC 7239 Forwarded headers, in
// order. An element without for= yields "" (unparsable), so it cannot be
// skipped over.
func forwardedFor(headers []string) []string {
	var out []string
	for _, h := range headers {
		for _, elem := range strings.Split(h, ",") {
			val := ""
			for _, pair := range strings.Split(elem, ";") {
				k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
				if ok && strings.EqualFold(k, "for") {
					val = strings.Trim(v, `"`)
				}
			}
			out = append(out, val)
		}
	}
	return out
}

// authenticate identifies the caller (into v) and holds it to the adapter's
// environment and to perms: with the host's Authenticator if there is one,
// otherwise by API key (bearer token, client IP, then keys.Verify, with
// the checks inside Verify so a refused key does not spend its limit).
// api is the request's API name; "" for the key endpoints, which are
// outside the account's plan and spend no credits. Rate-limit headers are
// set whenever the limiter counted the request, so a 429 carries them too.
// With release not nil, the request is counted in flight against its
// account's plan, before its limits and credits (keys.InFlight), and
// *release ends that; on an error it does nothing.
func (a *Adapter) authenticate(w http.ResponseWriter, r *http.Request, ip netip.Addr, perms []string, api string, v *keys.Verified, release *func()) error {
	if a.c.authenticate != nil {
		p, err := a.c.authenticate(r)
		if err != nil {
			return authFailure(err)
		}
		if p.AccountID == "" {
			return errNoCredentials
		}
		*v = keys.Verified{KeyID: p.Subject, AccountID: p.AccountID, Environment: p.Environment, Permissions: slices.Clone(p.Permissions)}
		if err := a.check(v, perms); err != nil || release == nil {
			return err
		}
		*release, err = a.m.Acquire(r.Context(), v) // nothing was spent before it
		return err
	}
	token, err := BearerToken(r)
	if err != nil {
		return err
	}
	// On the stack, filled by index: append's possible growth would move
	// every option's pointers (InFlight's release) to the heap.
	var buf [6]keys.VerifyOption
	buf[0], buf[1] = keys.FromIP(ip), keys.OnEndpoint(r.Method, r.URL.Path)
	if api == "" {
		buf[2] = keys.OutsidePlan()
	} else {
		buf[2] = keys.OnAPI(api)
	}
	n := 3
	if len(perms) > 0 {
		buf[n], n = keys.Require(perms...), n+1
	}
	if a.c.env != "" {
		buf[n], n = keys.InEnvironment(a.c.env), n+1
	}
	if release != nil {
		buf[n], n = keys.InFlight(release), n+1
	}
	opts := buf[:n]
	*v, err = a.m.Verify(r.Context(), token, opts...)
	setRateLimitHeaders(w.Header(), v.RateLimit)
	setCreditsHeader(w.Header(), v, err)
	return err
}
