package keys

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/txcloud/keys/observe"
	"github.com/txcloud/keys/store"
)

// ImportKey is one key issued elsewhere, for Manager.Import: the key in
// plain text (Key), or its SHA-256 (Digest) when the plain text is not at
// hand. Either way only a digest is stored.
type ImportKey struct {
	// Key is the key: one of this Manager's format (its checksum must
	// pass), or a foreign key with a prefix named by WithForeignPrefixes.
	Key Secret
	// Digest is the SHA-256 of a foreign key, for a key whose plain text
	// is not known (store.Digest(sha256.Sum256(key)): a type that prints
	// redacted); Prefix then says which foreign prefix it has.
	Digest *store.Digest
	// Prefix, for a Digest import, is the key's non-secret beginning, as
	// responses will show it: a configured foreign prefix, and at most 8
	// more characters of the key.
	Prefix string

	AccountID   string // required
	Name        string
	Environment Environment
	Permissions []string
	AllowedIPs  []string
	RateLimit   int // 0: the Manager's default
	OwnerID     string
	Metadata    json.RawMessage
	ExpiresAt   time.Time // zero: none (or the longest lifetime allowed, under WithMaxKeyLifetime)
	CreatedAt   time.Time // zero: now; never in the future
}

// LogValue logs the entry without its key or digest (a JSON log handler
// would otherwise encode the struct with encoding/json, which writes the
// key: see APIKeyCreated.LogValue). fmt prints both redacted too;
// encoding/json writes the entry as it is, key included, as it must for
// a host that keeps its import batch in a file.
func (k ImportKey) LogValue() slog.Value {
	return slog.GroupValue(slog.String("account_id", k.AccountID), slog.String("name", k.Name),
		slog.String("environment", string(k.Environment)), slog.String("prefix", k.Prefix), slog.String("key", "[key redacted]"))
}

// ImportResult counts what Import did.
type ImportResult struct {
	Created  int // keys stored
	Existing int // keys already stored (an earlier import): left as they are
}

// importBatch is how many records Import hands a store at once.
const importBatch = 10000

// Import stores keys issued elsewhere, so that their holders keep using
// them through Verify. Every entry is validated first, with create's
// rules (a *ValidationError whose Param names the entry, "[3].name"), and
// nothing is stored unless all pass. Importing the same keys again creates
// nothing twice: a key whose digest is stored is counted as Existing. It
// writes in batches of 10,000, each all or nothing; on an error, the
// batches before it are stored (and counted), and importing again
// finishes the job. Import emits no events: the keys are not new to their
// holders.
func (m *Manager) Import(ctx context.Context, in []ImportKey) (res ImportResult, err error) {
	ctx, end := m.op(ctx, observe.Import)
	defer func() { end(err) }()
	if m.closed.Load() {
		return res, ErrClosed
	}
	now := m.now()
	recs := make([]*store.Record, len(in))
	for i := range in {
		r, err := m.importRecord(&in[i], now)
		if err != nil {
			var ve *ValidationError
			if errors.As(err, &ve) {
				ve.Param = fmt.Sprintf("[%d].%s", i, ve.Param)
			}
			return res, err
		}
		recs[i] = r
	}
	imp, _ := store.Capability[store.Importer](m.store)
	for len(recs) > 0 {
		batch := recs[:min(importBatch, len(recs))]
		recs = recs[len(batch):]
		n, err := m.importBatch(ctx, imp, batch)
		res.Created += n
		if err != nil {
			return res, fmt.Errorf("%w: importing keys: %w", ErrUnavailable, err)
		}
		res.Existing += len(batch) - n
	}
	return res, nil
}

func (m *Manager) importBatch(ctx context.Context, imp store.Importer, batch []*store.Record) (int, error) {
	if imp != nil {
		return imp.Import(ctx, batch)
	}
	n := 0
	for _, r := range batch {
		switch err := m.store.Write(ctx, store.Write{Insert: r}); {
		case errors.Is(err, store.ErrDuplicate):
		case err != nil:
			return n, err
		default:
			n++
		}
	}
	return n, nil
}

// importRecord validates one entry and makes its record.
func (m *Manager) importRecord(k *ImportKey, now time.Time) (*store.Record, error) {
	if k.AccountID == "" {
		return nil, missing("account_id")
	}
	var expires *time.Time
	if !k.ExpiresAt.IsZero() {
		expires = &k.ExpiresAt
	}
	var rate *int
	if k.RateLimit != 0 {
		rate = &k.RateLimit
	}
	s, err := m.validateCreate(&APIKeyCreate{Name: k.Name, Environment: k.Environment, Permissions: k.Permissions,
		AllowedIPs: k.AllowedIPs, RateLimit: rate, ExpiresAt: expires, OwnerID: k.OwnerID, Metadata: k.Metadata}, now)
	if err != nil {
		return nil, err
	}
	created := now
	if !k.CreatedAt.IsZero() {
		if k.CreatedAt.After(now) {
			return nil, invalid("created_at", "created_at must not be in the future")
		}
		created = k.CreatedAt
	}
	r := &store.Record{AccountID: k.AccountID, Name: s.name, Environment: string(s.environment), Permissions: s.permissions,
		AllowedIPs: s.allowedIPs, RateLimit: s.rateLimit, ExpiresAt: s.expiresAt, OwnerID: s.ownerID,
		Metadata: s.metadata, CreatedAt: storedTime(created), Version: 1}
	switch {
	case k.Key != "" && k.Digest != nil:
		return nil, invalid("key", "give the key or its digest, not both")
	case k.Key != "":
		key := string(k.Key)
		var buf [maxKeyLen]byte
		if env, ok := m.format.parse(key, &buf); ok {
			if env != s.environment {
				return nil, invalid("environment", "the key is a %s key", env)
			}
			r.Digest, r.Prefix = m.digest.sum(buf[:len(key)]), m.format.displayPrefix(k.Key)
		} else if d, ok := m.foreignDigest(key); ok {
			p, _ := m.foreignPrefix(key)
			r.Digest, r.Prefix = d, strings.Clone(key[:len(p)+4])
		} else {
			return nil, invalid("key", "not a key of this Manager's format, nor one with a prefix named by WithForeignPrefixes")
		}
	case k.Digest != nil:
		p, ok := m.foreignPrefix(k.Prefix)
		if !ok || len(k.Prefix) > len(p)+8 || strings.ContainsFunc(k.Prefix, func(c rune) bool { return c <= ' ' || c > '~' }) {
			return nil, invalid("prefix", "a digest import needs the key's prefix: a prefix named by WithForeignPrefixes and at most 8 more characters")
		}
		r.Digest, r.Prefix = *k.Digest, k.Prefix
	default:
		return nil, missing("key")
	}
	id, err := newKeyID(created)
	if err != nil {
		return nil, err
	}
	r.ID = id
	return r, nil
}

// newKeyID is a key ID for a record whose secret was made elsewhere.
func newKeyID(created time.Time) (string, error) {
	var random [10]byte
	if _, err := rand.Read(random[:]); err != nil {
		return "", fmt.Errorf("keys: reading randomness: %w", err)
	}
	return uuidV7(idPrefix, created, random[:]), nil
}
