package httpadapter

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"

	"github.com/txcloud/keys"
)

// Permissions the endpoints need.
const (
	PermissionManageKeys = "developers:write"
	PermissionReadKeys   = "developers:read"
)

// New returns the handler of the DevEx key endpoints, relative to where it
// is mounted:
//
//	POST   /developers/keys            create (developers:write; 201, key shown once)
//	GET    /developers/keys            list, newest first (developers:read)
//	GET    /developers/keys/{id}       one key (developers:read)
//	PATCH  /developers/keys/{id}       update (developers:write)
//	DELETE /developers/keys/{id}       revoke (developers:write; 200 with the revoked key)
//	POST   /developers/keys/{id}/roll  roll (developers:write; 201, new key shown once)
//
// The caller authenticates with a key (or through WithAuthenticator) and
// sees and changes only its own account's keys: another account's key ID is
// a 404, not a 403. It grants no permission it lacks, and a test key cannot
// touch live keys. The POSTs accept an Idempotency-Key, honoured for 24
// hours.
func New(m *keys.Manager, opts ...Option) http.Handler {
	h := &handler{m: m, c: newConfig(opts)}
	mux := http.NewServeMux()
	mux.Handle("POST /developers/keys", h.endpoint(PermissionManageKeys, h.create))
	mux.Handle("GET /developers/keys", h.endpoint(PermissionReadKeys, h.list))
	mux.Handle("GET /developers/keys/{id}", h.endpoint(PermissionReadKeys, h.get))
	mux.Handle("PATCH /developers/keys/{id}", h.endpoint(PermissionManageKeys, h.update))
	mux.Handle("DELETE /developers/keys/{id}", h.endpoint(PermissionManageKeys, h.revoke))
	mux.Handle("POST /developers/keys/{id}/roll", h.endpoint(PermissionManageKeys, h.roll))
	// Known paths, other methods: 405 in the envelope (ServeMux's own 405
	// is plain text).
	for path, allow := range map[string]string{
		"/developers/keys":           "GET, POST",
		"/developers/keys/{id}":      "GET, PATCH, DELETE",
		"/developers/keys/{id}/roll": "POST",
	} {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			h.c.writeError(w, r, badRequest(http.StatusMethodNotAllowed, "", "method "+r.Method+" is not allowed here; use "+allow))
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h.c.writeError(w, r, &httpError{status: http.StatusNotFound, typ: TypeNotFound, code: "not_found", message: "no such endpoint"})
	})
	return mux
}

type handler struct {
	m *keys.Manager
	c *config
}

// endpoint authenticates the caller, who must hold perm, then runs fn and
// answers its error in the envelope.
func (h *handler) endpoint(perm string, fn func(http.ResponseWriter, *http.Request, keys.Principal) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := h.principal(w, r, perm)
		if err == nil {
			err = fn(w, r, p)
		}
		if err != nil {
			h.c.writeError(w, r, err)
		}
	})
}

// principal authenticates the caller, by key unless WithAuthenticator says
// otherwise, and requires perm.
func (h *handler) principal(w http.ResponseWriter, r *http.Request, perm string) (keys.Principal, error) {
	if h.c.authenticate != nil {
		p, err := h.c.authenticate(r)
		if err != nil {
			return p, authFailure(err)
		}
		if !p.Has(perm) {
			return p, &keys.PermissionError{Message: "this needs " + perm}
		}
		return p, nil
	}
	// Requiring the permission inside Verify refuses a key without it
	// before the key's rate limit is spent.
	v, err := h.c.verify(w, r, h.m, keys.Require(perm))
	if err != nil {
		return keys.Principal{}, err
	}
	return v.Principal(), nil
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

// idempotencyKey returns the request's Idempotency-Key, "" if none; two
// headers are an error (the value's format is the Manager's to check).
func idempotencyKey(r *http.Request) (string, error) {
	vals := r.Header.Values("Idempotency-Key")
	switch len(vals) {
	case 0:
		return "", nil
	case 1:
		if vals[0] == "" {
			return "", keys.ValidateIdempotencyKey("")
		}
		return vals[0], nil
	}
	return "", invalidParam("Idempotency-Key", "send one Idempotency-Key header")
}

// jsonBody checks the content type and reads the body.
func (h *handler) jsonBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if err := checkJSON(r); err != nil {
		return nil, err
	}
	return readBody(w, r, h.c.maxBodyBytes)
}

func (h *handler) create(w http.ResponseWriter, r *http.Request, p keys.Principal) error {
	idem, err := idempotencyKey(r) // its format is CreateAs's to check, as Roll's is
	if err != nil {
		return err
	}
	body, err := h.jsonBody(w, r)
	if err != nil {
		return err
	}
	req, err := DecodeCreate(body)
	if err != nil {
		return err
	}
	created, err := h.m.CreateAs(r.Context(), p, req, idem)
	if err != nil {
		return err
	}
	writeCreated(w, created)
	return nil
}

func (h *handler) list(w http.ResponseWriter, r *http.Request, p keys.Principal) error {
	f, err := listFilter(r.URL.Query())
	if err != nil {
		return err
	}
	l, err := h.m.List(r.Context(), p, f)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, l)
	return nil
}

// listFilter reads limit, cursor, environment and revoked, each at most
// once; any other parameter is an error.
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

func (h *handler) get(w http.ResponseWriter, r *http.Request, p keys.Principal) error {
	k, err := h.m.Get(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, k)
	return nil
}

func (h *handler) update(w http.ResponseWriter, r *http.Request, p keys.Principal) error {
	body, err := h.jsonBody(w, r)
	if err != nil {
		return err
	}
	u, err := DecodeUpdate(body)
	if err != nil {
		return err
	}
	k, err := h.m.Update(r.Context(), p, r.PathValue("id"), u)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, k)
	return nil
}

func (h *handler) revoke(w http.ResponseWriter, r *http.Request, p keys.Principal) error {
	k, err := h.m.Revoke(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, k)
	return nil
}

func (h *handler) roll(w http.ResponseWriter, r *http.Request, p keys.Principal) error {
	idem, err := idempotencyKey(r)
	if err != nil {
		return err
	}
	var body []byte
	if r.ContentLength != 0 || r.Header.Get("Content-Type") != "" {
		if body, err = h.jsonBody(w, r); err != nil {
			return err
		}
	}
	grace, err := decodeRoll(body)
	if err != nil {
		return err
	}
	created, err := h.m.Roll(r.Context(), p, r.PathValue("id"), grace, idem)
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
	writeJSON(w, http.StatusCreated, created)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	setJSONHeaders(w.Header())
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // headers are sent: a write error can only be dropped
}

// setJSONHeaders are the headers of every body this package writes, errors
// included. no-store: the 201s hold secrets, and nothing else here is worth
// caching.
func setJSONHeaders(h http.Header) {
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
}
