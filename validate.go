package keys

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/txcloud/keys/store"
)

const (
	// maxNameLen is the longest name, in characters, as sent (surrounding
	// white space included, so that a schema's maxLength can say it).
	maxNameLen = 200
	// maxRateLimit bounds rate_limit (requests per minute). It keeps the GCRA
	// emission interval (one minute / limit) at microseconds or more; a key
	// that needs more than this needs no limit.
	maxRateLimit = 10_000_000
	// defaultMaxAllowedIPs is how many allowed_ips entries a key may have
	// unless WithMaxAllowedIPs says otherwise.
	defaultMaxAllowedIPs = 100
)

// DefaultVocabulary returns the TXCloud permissions, the vocabulary of a
// Manager unless WithVocabulary says otherwise: seven resources, each with
// read and write. The slice is new on every call.
func DefaultVocabulary() []string {
	return []string{
		"identity:read", "identity:write",
		"fraud:read", "fraud:write",
		"transactions:read", "transactions:write",
		"lending:read", "lending:write",
		"kyb:read", "kyb:write",
		"watchlist:read", "watchlist:write",
		"developers:read", "developers:write",
	}
}

// keySpec is a validated, normalised create request: exactly what becomes a
// Record.
type keySpec struct {
	name        string
	environment Environment
	permissions []string
	allowedIPs  []netip.Prefix
	// ipText is allowedIPs as the API shows them (formatPrefix); nil for
	// a spec not made by validateAllowedIPs (a roll's successor).
	ipText    []string
	rateLimit int
	expiresAt time.Time
	ownerID   string
	metadata  []byte
	disabled  store.DisabledBy
	maxKeys   int           // the account's cap on active keys (Write.MaxActive)
	credits   *store.Budget // the key's new budget (create); nil: none
}

// budget is the credit budget a new key's Write sets, or nil.
func (s *keySpec) budget(rec *store.Record) *store.CreditBudget {
	if s.credits == nil {
		return nil
	}
	return &store.CreditBudget{ID: rec.CreditsID, Budget: *s.credits}
}

// validateCreate is the one place the create rules live. It returns the first
// problem found, in field order, as a *ValidationError.
func (m *Manager) validateCreate(req *APIKeyCreate, now time.Time) (keySpec, error) {
	var s keySpec
	var err error
	if s.name, err = validateName(req.Name); err != nil {
		return s, err
	}
	if s.environment, err = validateEnvironment(req.Environment); err != nil {
		return s, err
	}
	if s.permissions, err = m.validatePermissions(req.Permissions); err != nil {
		return s, err
	}
	if s.allowedIPs, s.ipText, err = m.validateAllowedIPs(req.AllowedIPs); err != nil {
		return s, err
	}
	s.rateLimit = m.defaultRateLimit
	if req.RateLimit != nil {
		if s.rateLimit, err = validateRateLimit(*req.RateLimit); err != nil {
			return s, err
		}
	}
	if req.ExpiresAt != nil {
		if s.expiresAt, err = validateExpiresAt(*req.ExpiresAt, now); err != nil {
			return s, err
		}
	}
	if s.expiresAt, err = m.lifetime(s.expiresAt, req.ExpiresAt != nil, now, now); err != nil {
		return s, err
	}
	if req.OwnerID != "" {
		if s.ownerID, err = validateOwnerID(req.OwnerID); err != nil {
			return s, err
		}
	}
	if s.metadata, err = validateMetadata(req.Metadata); err != nil {
		return s, err
	}
	if req.Credits != nil {
		if err := m.keepsCredits(); err != nil {
			return s, err
		}
		c, err := validateCredits(req.Credits, now)
		if err != nil {
			return s, err
		}
		s.credits = &c
	}
	if req.Disabled {
		s.disabled = store.DisabledByHost // a Scoped create makes it store.DisabledByAccount
	}
	return s, nil
}

func validateName(name string) (string, error) {
	if name == "" {
		return "", missing("name")
	}
	if !utf8.ValidString(name) {
		return "", invalid("name", "name must be valid UTF-8")
	}
	if n := utf8.RuneCountInString(name); n > maxNameLen {
		return "", invalid("name", "name must be at most %d characters, got %d", maxNameLen, n)
	}
	if name = strings.TrimSpace(name); name == "" {
		return "", missing("name") // only white space: no name given
	}
	for _, r := range name {
		if unicode.IsControl(r) || isBidiControl(r) {
			return "", invalid("name", "name must not contain control or bidirectional-formatting characters (U+%04X)", r)
		}
	}
	return name, nil
}

// isBidiControl reports the invisible characters that reorder text
// ("Trojan Source", CVE-2021-42574): a key name shown in a dashboard must
// read as what it is.
func isBidiControl(r rune) bool {
	switch {
	case r == 0x061C, r == 0x200E, r == 0x200F:
		return true
	case r >= 0x202A && r <= 0x202E:
		return true
	case r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}

func validateEnvironment(env Environment) (Environment, error) {
	switch env {
	case Live, Test:
		return env, nil
	case "":
		return "", missing("environment")
	}
	return "", invalid("environment", "environment must be %q or %q", Live, Test)
}

func (m *Manager) validatePermissions(perms []string) ([]string, error) {
	out := make([]string, 0, len(perms))
	for i, p := range perms {
		if _, ok := m.vocabulary[p]; !ok {
			return nil, invalid(fmt.Sprintf("permissions[%d]", i), "unknown permission %q: permissions are resource:action from %s", truncate(p, 64), strings.Join(m.vocabularyList, ", "))
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// validateAllowedIPs parses, masks and deduplicates an allowlist, and
// returns each entry's text as the API shows it: the entry as sent, when
// it is already in that form (no copy), or its formatPrefix.
func (m *Manager) validateAllowedIPs(ips []string) ([]netip.Prefix, []string, error) {
	if len(ips) > m.maxAllowedIPs {
		return nil, nil, invalid("allowed_ips", "at most %d entries, got %d", m.maxAllowedIPs, len(ips))
	}
	if len(ips) == 0 {
		return []netip.Prefix{}, []string{}, nil
	}
	out := make([]netip.Prefix, 0, len(ips))
	text := make([]string, 0, len(ips))
	for i, s := range ips {
		p, err := parseAllowedIP(s)
		if err != nil {
			return nil, nil, invalid(fmt.Sprintf("allowed_ips[%d]", i), "%v", err)
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
			text = append(text, prefixText(p, s))
		}
	}
	return out, text, nil
}

// prefixText is formatPrefix(p), without a copy when sent already is.
func prefixText(p netip.Prefix, sent string) string {
	var buf [64]byte
	b := buf[:0]
	if p.IsSingleIP() {
		b = p.Addr().AppendTo(b)
	} else {
		b = p.AppendTo(b)
	}
	if string(b) == sent {
		return sent
	}
	return string(b)
}

// parseAllowedIP parses one allowed_ips entry: an IPv4 or IPv6 address, or a
// CIDR prefix. It returns the prefix masked (10.1.2.3/8 becomes 10.0.0.0/8),
// an address as a full-length prefix, and an IPv4-mapped IPv6 address or
// prefix as plain IPv4, so that one allowlist entry matches however the
// client's address arrives. It refuses zones (fe80::1%eth0: meaningless off
// the host) and /0 prefixes (they allow every address: omit allowed_ips
// instead).
func parseAllowedIP(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, fmt.Errorf("empty address")
	}
	if len(s) > 64 { // longer than any IPv6 prefix text
		return netip.Prefix{}, fmt.Errorf("not an IP address or CIDR prefix")
	}
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, fmt.Errorf("not an IP address or CIDR prefix: %q", s)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("not an IP address or CIDR prefix: %q", s)
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("IPv6 zones are not allowed: %q", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	if p.Bits() == 0 {
		return netip.Prefix{}, fmt.Errorf("a /0 prefix allows every address; omit allowed_ips instead")
	}
	return p.Masked(), nil
}

// formatPrefix is the stored form of an allowlist entry: a bare address for
// a full-length prefix, CIDR otherwise.
func formatPrefix(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

func validateRateLimit(n int) (int, error) {
	if n < 1 || n > maxRateLimit {
		return 0, invalid("rate_limit", "rate_limit is requests per minute, from 1 to %d", maxRateLimit)
	}
	return n, nil
}

func validateExpiresAt(t, now time.Time) (time.Time, error) {
	t = storedTime(t)
	if !t.After(now) {
		return time.Time{}, invalid("expires_at", "expires_at must be in the future")
	}
	return t, nil
}

// lifetime applies the Manager's maximum key lifetime (WithMaxKeyLifetime)
// to an expiry: a key created at created may live until created+max. An
// expiry asked for beyond that is refused, never silently shortened (a
// client would believe its key lives longer than it does); a key asked to
// live forever is refused too, and a create that names no expiry gets the
// longest allowed (explicit false: the caller said nothing).
func (m *Manager) lifetime(expires time.Time, explicit bool, created, now time.Time) (time.Time, error) {
	if m.maxLifetime == 0 {
		return expires, nil
	}
	limit := storedTime(created.Add(m.maxLifetime))
	switch {
	case !explicit:
		return limit, nil
	case expires.IsZero():
		return time.Time{}, invalid("expires_at", "keys must expire: the longest lifetime allowed is %s", m.maxLifetime)
	case expires.After(limit):
		return time.Time{}, invalid("expires_at", "expires_at must be at most %s after the key's creation (%s)", m.maxLifetime, limit.Format(time.RFC3339))
	}
	return expires, nil
}

// storedTime is the one precision and zone every store keeps (PostgreSQL's
// timestamptz holds microseconds), so a record reads back as it was written.
func storedTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// validateIdempotencyKey checks an Idempotency-Key: 10 to 255 letters,
// digits, '-' and '_'.
func validateIdempotencyKey(k string) error {
	if len(k) < 10 || len(k) > 255 {
		return invalid("Idempotency-Key", "Idempotency-Key must be 10 to 255 characters, got %d", len(k))
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(isBase62(c) || c == '-' || c == '_') {
			return invalid("Idempotency-Key", "Idempotency-Key may hold only letters, digits, '-' and '_'")
		}
	}
	return nil
}

// truncate keeps an echoed value short, so an error message cannot be used
// to amplify a request.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
