package httpadapter

import (
	"encoding/json"
	"net/http"

	"github.com/txcloud/keys"
)

// PermissionManageKeys is what a caller needs to create keys.
const PermissionManageKeys = "developers:write"

// New returns the handler of the DevEx key endpoints, relative to where it
// is mounted: POST /developers/keys creates a key (201, with the key shown
// once). The caller authenticates with a key holding developers:write (or
// through WithAuthenticator); the new key belongs to the caller's account,
// holds no permission the caller lacks, and is a test key if the caller is.
// An Idempotency-Key header makes retries safe for 24 hours.
func New(m *keys.Manager, opts ...Option) http.Handler {
	h := &handler{m: m, c: newConfig(opts)}
	mux := http.NewServeMux()
	mux.HandleFunc("/developers/keys", h.keys)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h.c.writeError(w, r, &httpError{status: http.StatusNotFound, typ: TypeNotFound, code: "not_found", message: "no such endpoint"})
	})
	return mux
}

type handler struct {
	m *keys.Manager
	c *config
}

func (h *handler) keys(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.c.writeError(w, r, badRequest(http.StatusMethodNotAllowed, "", "method "+r.Method+" is not allowed here; use POST"))
		return
	}
	if err := h.create(w, r); err != nil {
		h.c.writeError(w, r, err)
	}
}

// principal authenticates the caller, by key unless WithAuthenticator says
// otherwise.
func (h *handler) principal(w http.ResponseWriter, r *http.Request) (keys.Principal, error) {
	if h.c.authenticate != nil {
		p, err := h.c.authenticate(r)
		if err != nil {
			return p, authFailure(err)
		}
		return p, nil
	}
	// Requiring the permission inside Verify refuses a key without it
	// before the key's rate limit is spent.
	v, err := h.c.verify(w, r, h.m, keys.Require(PermissionManageKeys))
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

func (h *handler) create(w http.ResponseWriter, r *http.Request) error {
	p, err := h.principal(w, r)
	if err != nil {
		return err
	}
	if !p.Has(PermissionManageKeys) {
		return &keys.PermissionError{Message: "creating keys needs " + PermissionManageKeys}
	}
	idem := r.Header.Values("Idempotency-Key")
	if len(idem) > 1 {
		return &httpError{status: http.StatusBadRequest, typ: TypeValidation, code: keys.CodeInvalidParameter, param: "Idempotency-Key", message: "send one Idempotency-Key header"}
	}
	idemKey := ""
	if len(idem) == 1 {
		if err := keys.ValidateIdempotencyKey(idem[0]); err != nil {
			return err
		}
		idemKey = idem[0]
	}
	if err := checkJSON(r); err != nil {
		return err
	}
	body, err := readBody(w, r, h.c.maxBodyBytes)
	if err != nil {
		return err
	}
	req, err := DecodeCreate(body)
	if err != nil {
		return err
	}
	created, err := h.m.CreateAs(r.Context(), p, req, idemKey)
	if err != nil {
		return err
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("Cache-Control", "no-store") // the body holds a secret
	hd.Set("X-Content-Type-Options", "nosniff")
	if created.Replayed {
		hd.Set("Idempotent-Replayed", "true")
	}
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(created) // headers are sent: a write error can only be dropped
	return nil
}
