// Package secretscanning receives GitHub's secret-scanning partner
// alerts: when a key of this library's format is pushed to a public
// repository, GitHub posts it here, signed, and the receiver revokes (or
// disables) the key through keys.Manager.ReportLeak, which emits
// key.leaked for the host to tell the key's holder. It answers in
// GitHub's feedback format, and every refusal in the TXCloud error
// envelope of package httpadapter.
//
//	pub, _ := secretscanning.ParsePublicKeys(githubMetaJSON)
//	a := httpadapter.New(m)
//	mux.Handle("POST /v1/secret-scanning/github", secretscanning.New(m, pub, keys.LeakRevoke, a.WriteError))
//
// GitHub learns where to post, and which token format is ours, from the
// provider's registration (docs/security.md says what to send).
package secretscanning

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/event"
	"github.com/txcloud/keys/httpadapter"
	"github.com/txcloud/keys/internal/httpjson"
)

// PublicKey is one of the public keys GitHub signs secret-scanning alerts
// with, as its public-key endpoint serves them
// (https://api.github.com/meta/public_keys/secret_scanning).
type PublicKey struct {
	ID  string
	Key *ecdsa.PublicKey
}

// ParsePublicKeys reads the JSON of GitHub's public-key endpoint:
// {"public_keys":[{"key_identifier":"…","key":"-----BEGIN PUBLIC KEY-----…","is_current":true}]}.
// Every key must be an ECDSA P-256 key in PEM; keys that are no longer
// current are kept, since alerts signed a moment ago may still arrive.
func ParsePublicKeys(data []byte) ([]PublicKey, error) {
	var doc struct {
		PublicKeys []struct {
			ID  string `json:"key_identifier"`
			Key string `json:"key"`
		} `json:"public_keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("secretscanning: GitHub public keys: %w", err)
	}
	if len(doc.PublicKeys) == 0 {
		return nil, errors.New("secretscanning: GitHub public keys: none listed")
	}
	out := make([]PublicKey, 0, len(doc.PublicKeys))
	for i, k := range doc.PublicKeys {
		block, _ := pem.Decode([]byte(k.Key))
		if block == nil || k.ID == "" {
			return nil, fmt.Errorf("secretscanning: GitHub public key %d: no identifier, or not PEM", i)
		}
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("secretscanning: GitHub public key %q: %w", k.ID, err)
		}
		ec, ok := pub.(*ecdsa.PublicKey)
		if !ok || ec.Curve.Params().Name != "P-256" {
			return nil, fmt.Errorf("secretscanning: GitHub public key %q: not ECDSA P-256", k.ID)
		}
		out = append(out, PublicKey{ID: k.ID, Key: ec})
	}
	return out, nil
}

// Limits of the secret-scanning receiver.
const (
	// MaxBody bounds an alert's body; more is a 413, unread. GitHub's
	// alerts are small (1,000 tokens, MaxTokens, are about 110 KB).
	MaxBody = 160 << 10
	// MaxTokens bounds the tokens of one alert.
	MaxTokens = 1000
	// MaxConcurrent bounds the alerts handled at once; more are a 429
	// (GitHub retries), so that no flood of posts takes more of the
	// server than this.
	MaxConcurrent = 4
	// alertReplayWindow is how long a delivered body is remembered
	// (keys.Manager.Deduplicate: in the store, shared by every instance,
	// when it is a store.Marker).
	alertReplayWindow = 24 * time.Hour
)

// New returns the handler for GitHub's secret-scanning partner alerts
// (POST; mount it where GitHub was told to send them). It
// checks the body's ECDSA P-256 / SHA-256 signature (headers
// Github-Public-Key-Identifier and Github-Public-Key-Signature) against
// the keys given, then reports each token to Manager.ReportLeak with
// action, and answers GitHub's feedback format: for each token its type and
// the hex SHA-256 of the token (token_hash: the response never carries a
// key), labelled true_positive if it is a stored key, false_positive if
// not.
//
// The signature headers are checked before the body is read (a known key
// identifier, a signature that can be DER of a P-256 signature), and so
// is a Content-Length over MaxBody; at most MaxConcurrent alerts are
// handled at once (more: 429, Retry-After 1). So a flood of large forged
// posts costs the server next to nothing.
//
// Refused, in the error envelope, with nothing changed: an unsigned,
// badly signed or unknown-key body (401), a body over MaxBody (413),
// one that is not a JSON array of alerts or holds more than MaxTokens
// (400), and a body already delivered in the last 24 hours (409, so a
// replayed alert cannot be used to probe or to fire events again; the
// memory is keys.Manager.Deduplicate's: the store's, shared by every
// instance, on memstore and pgstore).
//
// Refusals are written by writeError: the httpadapter.Adapter's
// WriteError, so that they carry its request IDs and logging.
//
// It panics if m or writeError is nil or no key is given: mistakes in the
// host's code, found when it starts.
func New(m *keys.Manager, publicKeys []PublicKey, action keys.LeakAction, writeError func(http.ResponseWriter, *http.Request, error)) http.Handler {
	if m == nil || writeError == nil {
		panic("secretscanning: New: nil Manager or writeError")
	}
	if len(publicKeys) == 0 {
		panic("secretscanning: New: no public keys")
	}
	byID := make(map[string]*ecdsa.PublicKey, len(publicKeys))
	for _, k := range publicKeys {
		if k.Key == nil || k.ID == "" {
			panic("secretscanning: New: a key without identifier or value")
		}
		byID[k.ID] = k.Key
	}
	return &receiver{m: m, writeError: writeError, keys: byID, action: action, slots: make(chan struct{}, MaxConcurrent)}
}

type receiver struct {
	m          *keys.Manager
	writeError func(http.ResponseWriter, *http.Request, error)
	keys       map[string]*ecdsa.PublicKey
	action     keys.LeakAction

	slots chan struct{} // one per alert being handled
}

// alert is one entry of GitHub's payload; other fields are ignored.
type alert struct {
	Token  string `json:"token"`
	Type   string `json:"type"`
	URL    string `json:"url"`
	Source string `json:"source"`
}

// feedback is one entry of the answer.
type feedback struct {
	TokenHash string `json:"token_hash"`
	TokenType string `json:"token_type"`
	Label     string `json:"label"`
}

func (s *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := s.serve(w, r); err != nil {
		s.writeError(w, r, err)
	}
}

func (s *receiver) serve(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		return invalidRequest(http.StatusMethodNotAllowed, "", "method "+r.Method+" is not allowed here; use POST")
	}
	// The headers first: a post that names no known key, or carries no
	// signature that could be one, is refused before its body is read.
	// Those refusals close the connection: net/http would otherwise read
	// up to 256 KiB of the unread body to keep it alive.
	pub, sig, err := s.signature(r)
	if err != nil {
		w.Header().Set("Connection", "close")
		return err
	}
	if r.ContentLength > MaxBody { // said up front: refused unread
		w.Header().Set("Connection", "close")
		return tooLarge
	}
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	default:
		w.Header().Set("Connection", "close")
		w.Header().Set("Retry-After", "1")
		return &httpadapter.Error{Status: http.StatusTooManyRequests, Type: httpadapter.TypeRateLimit, Code: "rate_limit_exceeded",
			Message: fmt.Sprintf("%d alerts are being handled; retry in a second", MaxConcurrent)}
	}
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	digest := sha256.Sum256(body)
	if !ecdsa.VerifyASN1(pub, digest[:], sig) {
		return errBadSignature
	}
	var alerts []alert
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&alerts); err != nil || dec.More() || alerts == nil {
		return invalidRequest(http.StatusBadRequest, "", "the body must be a JSON array of alerts")
	}
	if len(alerts) > MaxTokens {
		return invalidRequest(http.StatusBadRequest, "", fmt.Sprintf("at most %d tokens in one alert", MaxTokens))
	}
	fresh, forget, err := s.m.Deduplicate(r.Context(), digest, alertReplayWindow)
	if err != nil {
		return err
	}
	if !fresh {
		return &httpadapter.Error{Status: http.StatusConflict, Type: httpadapter.TypeIdempotency, Code: "alert_replayed", Message: "this alert was delivered already"}
	}
	out := make([]feedback, 0, len(alerts))
	for _, al := range alerts {
		rep, err := s.m.ReportLeak(r.Context(), al.Token, event.Leak{URL: al.URL, Source: al.Source, Type: al.Type}, s.action)
		if err != nil {
			// Let GitHub's retry in: not every token was handled.
			if ferr := forget(context.WithoutCancel(r.Context())); ferr != nil {
				err = errors.Join(err, ferr)
			}
			return err
		}
		sum := sha256.Sum256([]byte(al.Token))
		label := "false_positive"
		if rep.Found {
			label = "true_positive"
		}
		out = append(out, feedback{TokenHash: hex.EncodeToString(sum[:]), TokenType: al.Type, Label: label})
	}
	httpjson.Write(w, http.StatusOK, out)
	return nil
}

var errBadSignature = &httpadapter.Error{Status: http.StatusUnauthorized, Type: httpadapter.TypeAuthentication, Code: "invalid_signature",
	Message: "the alert is not signed by a known GitHub key"}

// signature reads the signature headers: one key identifier, of a key
// given to New, and one signature, base64 of what can be an ASN.1 DER
// ECDSA P-256 signature (a SEQUENCE of two INTEGERs of at most 33 bytes:
// 8 to 72 bytes in all). Anything else is refused before the body is read.
func (s *receiver) signature(r *http.Request) (*ecdsa.PublicKey, []byte, error) {
	ids, sigs := r.Header.Values("Github-Public-Key-Identifier"), r.Header.Values("Github-Public-Key-Signature")
	if len(ids) != 1 || len(sigs) != 1 || len(sigs[0]) > 128 {
		return nil, nil, errBadSignature
	}
	pub, ok := s.keys[ids[0]]
	if !ok {
		return nil, nil, errBadSignature
	}
	sig, err := base64.StdEncoding.DecodeString(sigs[0])
	if err != nil || len(sig) < 8 || len(sig) > 72 || sig[0] != 0x30 || int(sig[1]) != len(sig)-2 {
		return nil, nil, errBadSignature
	}
	return pub, sig, nil
}

func invalidRequest(status int, param, message string) *httpadapter.Error {
	return &httpadapter.Error{Status: status, Type: httpadapter.TypeValidation, Code: "invalid_request", Param: param, Message: message}
}

var tooLarge = invalidRequest(http.StatusRequestEntityTooLarge, "", fmt.Sprintf("request body must be at most %d bytes", MaxBody))

// readBody reads at most MaxBody bytes; more is a 413.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return nil, tooLarge
	case err != nil:
		return nil, invalidRequest(http.StatusBadRequest, "", "could not read the request body")
	}
	return body, nil
}
