package httpadapter

import (
	"net/http"

	"github.com/txcloud/keys"
)

// Middleware authenticates every request with an API key from
// "Authorization: Bearer" and passes the verified key to next in the
// request context (keys.FromContext). It refuses, in the error envelope,
// a missing or invalid key (401 unauthorized), a revoked key (401
// key_revoked), a disallowed client IP (401 ip_not_allowed), a key lacking
// the permissions of RequirePermissions (403 forbidden) and a key over its
// rate limit (429, with Retry-After). A store outage is a 503, never a 401.
func Middleware(m *keys.Manager, opts ...Option) func(http.Handler) http.Handler {
	c := newConfig(opts)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			v, err := c.verify(w, r, m)
			if err != nil {
				c.writeError(w, r, err)
				return
			}
			next.ServeHTTP(w, r.WithContext(keys.NewContext(r.Context(), v)))
		})
	}
}

// RequirePermission guards one route behind Middleware: it answers 403
// unless the verified key holds every one of perms, and 401 if no
// Middleware verified a key first.
func RequirePermission(perms ...string) func(http.Handler) http.Handler {
	c := newConfig(nil)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			v, ok := keys.FromContext(r.Context())
			if !ok {
				c.writeError(w, r, errNoPrincipal)
				return
			}
			for _, p := range perms {
				if !v.Key.HasPermission(p) {
					c.writeError(w, r, &keys.PermissionError{Message: "the key lacks " + p})
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}
