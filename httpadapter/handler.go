package httpadapter

import (
	"cmp"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/event"
	"github.com/txcloud/keys/internal/httpjson"
	"github.com/txcloud/keys/limit"
)

// endpoint authenticates the caller, who must hold perm, then runs fn as
// that principal and answers its error in the envelope. The request counts
// against the account's management limit (and, for usage reads, group
// "usage", their own lower one), and in usage under the endpoint's own
// name, its pattern ("POST /developers/keys"): priced at zero unless
// keys.WithPrices names it, and outside the plan (no quota, no credits),
// so that the owner of a leaked key can always revoke it.
func (a *Adapter) endpoint(perm, group string, fn func(http.ResponseWriter, *http.Request, keys.Scoped) error) http.Handler {
	perms := []string{perm}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := a.begin(w, r)
		v, sw := &s.ctx.V, &s.sw
		err := a.authenticate(sw, r, s.ip, perms, "", v, nil)
		if err == nil {
			err = a.allowManagement(r, v.AccountID, group)
		}
		if err == nil {
			// The events of a change name the request that made it.
			o := event.Origin{RequestID: s.id}
			if s.ip.IsValid() {
				o.ClientIP = s.ip.String()
			}
			err = fn(sw, r.WithContext(event.NewContext(r.Context(), o)), a.m.As(v.Principal()))
		}
		if err != nil {
			a.WriteError(sw, r, err)
		}
		status := cmp.Or(sw.status, http.StatusOK)
		if r.Context().Err() != nil {
			status = StatusClientClosedRequest
		}
		a.m.CountUsage(v, r.Pattern, status) // nothing when no key was found
		a.logRequest(r, s, r.Pattern, status)
	})
}

// authFailure keeps a custom authenticator's unknown errors on the 401
// side: failing to recognise a caller must never read as a server fault
// that clients retry, nor as success.
func authFailure(err error) error {
	status, _ := describe(err)
	if status == http.StatusInternalServerError {
		return errNoCredentials
	}
	return err
}

// allowManagement counts a request against the account's limits on the
// key endpoints (WithManagementLimit; with group "usage", WithUsageReadLimit
// too), in the Manager's limiter: shared by every instance when it is
// (redislimit).
func (a *Adapter) allowManagement(r *http.Request, account, group string) error {
	checks := limit.Checks{{Name: limit.Management, ID: account, Max: a.c.manageLimit}}
	if group != "" {
		checks[1] = limit.Check{Name: limit.Management, ID: account, Route: group, Max: a.c.usageReadLimit}
	}
	rl, ok, err := a.m.Limiter().Allow(r.Context(), checks, time.Now())
	switch {
	case err != nil:
		return fmt.Errorf("%w: %w", keys.ErrUnavailable, err)
	case !ok:
		return &keys.RateLimitError{RateLimit: rl}
	}
	return nil
}

// issueOptions turns the request's Idempotency-Key header, if any, into
// the option of Create and Roll, which check its format; two headers are
// an error.
func issueOptions(r *http.Request) ([]keys.IssueOption, error) {
	vals := r.Header.Values("Idempotency-Key")
	switch len(vals) {
	case 0:
		return nil, nil
	case 1:
		return []keys.IssueOption{keys.IdempotencyKey(vals[0])}, nil
	}
	return nil, invalidParam("Idempotency-Key", "send one Idempotency-Key header")
}

// jsonBody checks the content type and reads the body.
func (a *Adapter) jsonBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if err := checkJSON(r); err != nil {
		return nil, err
	}
	return readBody(w, r, a.c.maxBodyBytes)
}

func (a *Adapter) create(w http.ResponseWriter, r *http.Request, as keys.Scoped) error {
	opts, err := issueOptions(r)
	if err != nil {
		return err
	}
	body, err := a.jsonBody(w, r)
	if err != nil {
		return err
	}
	req, err := DecodeCreate(body)
	if err != nil {
		return err
	}
	created, err := as.Create(r.Context(), req, opts...)
	if err != nil {
		return err
	}
	writeCreated(w, created)
	return nil
}

func (a *Adapter) list(w http.ResponseWriter, r *http.Request, as keys.Scoped) error {
	f, err := listFilter(r.URL.Query())
	if err != nil {
		return err
	}
	l, err := as.List(r.Context(), f)
	if err != nil {
		return err
	}
	return writeLarge(w, r, l)
}

// writeLarge writes a large answer (a page of keys, usage) unless the
// client has left: then nobody reads it, and it is a 499 without the
// encoding.
func writeLarge(w http.ResponseWriter, r *http.Request, v any) error {
	if err := r.Context().Err(); err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, v)
	return nil
}

// listFilter reads limit, cursor, environment, revoked, owner_id and
// expiring_within, each at most once; any other parameter is an error.
func listFilter(q url.Values) (keys.ListFilter, error) {
	var f keys.ListFilter
	for name, vals := range q {
		if len(vals) != 1 {
			return f, invalidParam(paramName(name), "give "+paramName(name)+" once")
		}
		v := vals[0]
		switch name {
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil {
				return f, invalidParam("limit", "limit must be an integer from 1 to 100")
			}
			if n == 0 {
				n = -1 // an explicit 0 is out of range, not "the default"
			}
			f.Limit = n
		case "cursor":
			f.Cursor = v
		case "environment":
			f.Environment = keys.Environment(v)
		case "owner_id":
			f.OwnerID = v
		case "expiring_within":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return f, invalidParam("expiring_within", "expiring_within must be a whole number of seconds, at least 1")
			}
			f.ExpiringWithin = time.Duration(min(n, 1<<31)) * time.Second
		case "revoked":
			b, err := strconv.ParseBool(v)
			if err != nil || (v != "true" && v != "false") {
				return f, invalidParam("revoked", "revoked must be true or false")
			}
			f.Revoked = &b
		default:
			return f, invalidParam(paramName(name), "unknown query parameter")
		}
	}
	return f, nil
}

func (a *Adapter) get(w http.ResponseWriter, r *http.Request, as keys.Scoped) error {
	k, err := as.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, k)
	return nil
}

func (a *Adapter) update(w http.ResponseWriter, r *http.Request, as keys.Scoped) error {
	body, err := a.jsonBody(w, r)
	if err != nil {
		return err
	}
	u, err := DecodeUpdate(body)
	if err != nil {
		return err
	}
	k, err := as.Update(r.Context(), r.PathValue("id"), u)
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, k)
	return nil
}

func (a *Adapter) revoke(w http.ResponseWriter, r *http.Request, as keys.Scoped) error {
	k, err := as.Revoke(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, k)
	return nil
}

func (a *Adapter) roll(w http.ResponseWriter, r *http.Request, as keys.Scoped) error {
	opts, err := issueOptions(r)
	if err != nil {
		return err
	}
	var body []byte
	if r.ContentLength != 0 || r.Header.Get("Content-Type") != "" {
		if body, err = a.jsonBody(w, r); err != nil {
			return err
		}
	}
	grace, err := decodeRoll(body)
	if err != nil {
		return err
	}
	created, err := as.Roll(r.Context(), r.PathValue("id"), grace, opts...)
	if err != nil {
		return err
	}
	writeCreated(w, created)
	return nil
}

// writeCreated answers 201 with a body that holds a secret.
func writeCreated(w http.ResponseWriter, created *keys.APIKeyCreated) {
	if created.Replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	httpjson.Write(w, http.StatusCreated, created)
}
