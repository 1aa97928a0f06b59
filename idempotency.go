package keys

import (
	"context"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/txcloud/keys/credits"
	"github.com/txcloud/keys/store"
)

// idempotencyTTL is how long an idempotent result is kept.
const idempotencyTTL = 24 * time.Hour

// idempotency keeps create results for retries. A replay must return the
// same response, secret included, yet the library never keeps a key in
// plain text. So the stored response is sealed with XChaCha20-Poly1305 under
// a key derived (HKDF-SHA-256) from the Manager's idempotency secret and the
// idempotency key, which is itself stored only as part of a digest: opening
// an entry needs the server secret and the client's idempotency key, and a
// dump of the store has neither. The entry and its ciphertext go when the
// entry expires.
type idempotency struct {
	secret []byte
}

// Format prints a redacted placeholder for the idempotency secret.
func (idempotency) Format(s fmt.State, _ rune) {
	_, _ = s.Write([]byte("[idempotency secret redacted]"))
}

// scopeMaterial binds an idempotency key to the caller and the endpoint, with
// lengths so that no two different tuples give the same bytes. A trusted
// caller is scoped apart from every principal.
func scopeMaterial(endpoint string, c caller, idempotencyKey string) []byte {
	who := "principal"
	if c.trusted {
		who = "trusted"
	}
	var b []byte
	for _, s := range []string{endpoint, who, c.p.AccountID, c.p.Subject, idempotencyKey} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return b
}

// fingerprint identifies a request by its validated form, so a retry that
// differs only in whitespace, field order or duplicate permissions is the
// same request.
func fingerprint(s keySpec) store.Digest {
	ips := make([]string, len(s.allowedIPs))
	for i, p := range s.allowedIPs {
		ips[i] = formatPrefix(p)
	}
	var budget *credits.Budget // in the API's JSON shape, as fingerprints have always had it
	if c := s.credits; c != nil {
		budget = &credits.Budget{Remaining: c.Remaining, Refill: c.Refill}
	}
	b, _ := json.Marshal(struct {
		Name        string
		Environment Environment
		Permissions []string
		AllowedIPs  []string
		RateLimit   int
		ExpiresAt   time.Time
		// Fields added later are left out when unset, so that a request
		// without them keeps the fingerprint it had before they existed.
		OwnerID  string           `json:",omitempty"`
		Metadata json.RawMessage  `json:",omitempty"`
		Disabled store.DisabledBy `json:",omitempty"`
		Credits  *credits.Budget  `json:",omitempty"`
	}{s.name, s.environment, s.permissions, ips, s.rateLimit, s.expiresAt, s.ownerID, s.metadata, s.disabled, budget})
	return sha256.Sum256(b)
}

func deriveKey(secret []byte, info string, salt []byte) ([]byte, error) {
	return hkdf.Key(sha256.New, secret, salt, info, chacha20poly1305.KeySize)
}

// What a key is derived for: each use of the secret gets keys of its
// own.
const (
	sealIdempotent = "txcloud-keys idempotency seal v1"
	sealWebhook    = "txcloud-keys webhook secret v1"
)

// aead is XChaCha20-Poly1305 under the key derived (HKDF-SHA-256) from
// the secret for info and material.
func (i idempotency) aead(info string, material []byte) (cipher.AEAD, error) {
	k, err := deriveKey(i.secret, info, material)
	if err != nil {
		return nil, err
	}
	return chacha20poly1305.NewX(k)
}

// seal encrypts plaintext under the key for info and material,
// authenticating aad with it: a random nonce, then the ciphertext.
func (i idempotency) seal(info string, material, aad, plaintext []byte) ([]byte, error) {
	a, err := i.aead(info, material)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, a.NonceSize(), a.NonceSize()+len(plaintext)+a.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("keys: reading randomness: %w", err)
	}
	return a.Seal(nonce, nonce, plaintext, aad), nil
}

// open reverses seal.
func (i idempotency) open(info string, material, aad, sealed []byte) ([]byte, error) {
	a, err := i.aead(info, material)
	if err != nil {
		return nil, err
	}
	if len(sealed) < a.NonceSize() {
		return nil, errors.New("keys: a sealed value is truncated")
	}
	return a.Open(nil, sealed[:a.NonceSize()], sealed[a.NonceSize():], aad)
}

// Endpoints that idempotency keys are scoped to.
const (
	createEndpoint = "POST /developers/keys"
	rollEndpoint   = "POST /developers/keys/{id}/roll"
)

// sealer makes the idempotency entry that stores created, for a run of
// withIdempotency to insert atomically with its own change.
type sealer = func(created *APIKeyCreated, keyID string) (*store.IdempotencyRecord, error)

// withIdempotency runs run at most once per (principal, endpoint,
// idempotency key) for idempotencyTTL: a retry with the same fingerprint
// replays the stored result, another fingerprint is ErrIdempotencyConflict.
// run must store its change together with the entry its sealer makes, and
// return store.ErrIdempotencyKeyExists if the store refused it for that entry;
// then a concurrent request won the race, and its result is replayed.
func (m *Manager) withIdempotency(ctx context.Context, c caller, endpoint, idempotencyKey string, fp store.Digest, now time.Time, run func(sealer) (*APIKeyCreated, error)) (*APIKeyCreated, error) {
	created, replayed, err := withIdempotency(m, ctx, c, endpoint, idempotencyKey, fp, now, run)
	if replayed {
		created.Replayed = true
	}
	return created, err
}

// withIdempotency is the method's rule for any answer T (a created key,
// a created webhook endpoint): it reports whether the answer is a replay.
func withIdempotency[T any](m *Manager, ctx context.Context, c caller, endpoint, idempotencyKey string, fp store.Digest, now time.Time, run func(func(*T, string) (*store.IdempotencyRecord, error)) (*T, error)) (*T, bool, error) {
	material := scopeMaterial(endpoint, c, idempotencyKey)
	scope := store.Digest(sha256.Sum256(material))
	seal := func(created *T, keyID string) (*store.IdempotencyRecord, error) {
		body, err := json.Marshal(created)
		if err != nil {
			return nil, err
		}
		sealed, err := m.idem.seal(sealIdempotent, material, scope[:], body)
		if err != nil {
			return nil, err
		}
		return &store.IdempotencyRecord{
			Scope: scope, Fingerprint: fp, KeyID: keyID, Sealed: sealed,
			CreatedAt: storedTime(now), ExpiresAt: storedTime(now.Add(idempotencyTTL)),
		}, nil
	}
	for range 2 {
		prev, err := m.store.LookupIdempotency(ctx, scope, now)
		switch {
		case err == nil:
			v, err := replay[T](m, prev, fp, material)
			return v, err == nil, err
		case !errors.Is(err, store.ErrNotFound):
			return nil, false, fmt.Errorf("%w: looking up idempotency key: %w", ErrUnavailable, err)
		}
		created, err := run(seal)
		if !errors.Is(err, store.ErrIdempotencyKeyExists) {
			return created, false, err
		}
	}
	return nil, false, fmt.Errorf("%w: idempotency entry changed during the request; retry", ErrUnavailable)
}

func (m *Manager) createIdempotent(ctx context.Context, c caller, account string, s keySpec, idempotencyKey string, now time.Time) (*APIKeyCreated, error) {
	// A trusted caller names the account, so the account is part of its
	// request: the same idempotency key for another account is a conflict.
	fp := fingerprint(s)
	if c.trusted {
		fp = sha256.Sum256(append(fp[:], account...))
	}
	return m.withIdempotency(ctx, c, createEndpoint, idempotencyKey, fp, now, func(seal sealer) (*APIKeyCreated, error) {
		created, rec, err := m.newKey(s, account, now)
		if err != nil {
			return nil, err
		}
		entry, err := seal(created, rec.ID)
		if err != nil {
			return nil, err
		}
		evs := m.createdEvents(ctx, c, created, account, now)
		switch err := m.store.Write(ctx, store.Write{Insert: rec, Idempotency: entry, Credits: s.budget(rec), MaxActive: s.maxKeys, KeepRevoked: s.maxKeys, Events: evs}); {
		case err == nil:
			return created, nil
		case errors.Is(err, store.ErrIdempotencyKeyExists), errors.Is(err, ErrKeyLimit):
			return nil, err
		default:
			return nil, fmt.Errorf("%w: storing key: %w", ErrUnavailable, err)
		}
	})
}

func replay[T any](m *Manager, prev *store.IdempotencyRecord, fp store.Digest, material []byte) (*T, error) {
	if prev.Fingerprint != fp {
		return nil, ErrIdempotencyConflict
	}
	body, err := m.idem.open(sealIdempotent, material, prev.Scope[:], prev.Sealed)
	if err != nil {
		// A different idempotency secret on another instance, or a damaged
		// entry: a server fault, not the client's.
		return nil, errors.New("keys: cannot open the stored idempotent result (do all instances share one idempotency secret?)")
	}
	var created T
	if err := json.Unmarshal(body, &created); err != nil {
		return nil, fmt.Errorf("keys: decoding stored idempotent result: %w", err)
	}
	return &created, nil
}
