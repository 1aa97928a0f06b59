// Package reqlog describes the request log: one Entry for every request
// that reaches the library (the HTTP middleware, the gRPC interceptors and
// the key endpoints), so that a customer can take the Request-Id of any
// response and read what happened to that request, and list its failed
// requests by key and status.
//
// Recording happens in package keys (keys.Manager.LogRequest, which the
// adapters call): lock-free and without allocation, into a bounded buffer
// written to the store in batches every second (store.LogStore: memstore,
// pgstore and sqlitestore keep a window of entries) and handed to an
// Exporter, if the host gives one (keys.WithRequestLogs). Reading goes
// through the Manager (keys.Manager.Logs and Log, or m.As(p) for a
// customer's own account), over HTTP as GET /developers/logs.
//
// An entry never holds the key, the Authorization header, cookies, bodies
// or the query string. A request whose key matches no stored record
// belongs to no account: it is never stored for a customer to read, and
// reaches only the host's Exporter.
package reqlog

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"strconv"
	"time"
)

// Entry is one request as the log keeps it (the API's RequestLog).
type Entry struct {
	// RequestID is the ID the response carried in its Request-Id header:
	// the library's own ("req_" and 26 base-32 characters, 130 random
	// bits) or the host's (httpadapter.WithRequestID), as given.
	RequestID string
	Timestamp time.Time // when the request reached the library, UTC
	// AccountID is the account of the key (or principal) that made the
	// request; "" when none was found. Kept for isolation, never shown.
	AccountID string
	// KeyID is the stored key the request presented, whenever one was
	// found (revoked, expired and disabled keys too); "" otherwise.
	KeyID       string
	Environment string // "live" or "test", with KeyID
	Method      string
	// Path is the route's pattern ("GET /v1/ping", as http.ServeMux
	// names it) when there is one, otherwise the escaped path, at most
	// MaxPathLen bytes. Never the query string.
	Path string
	// API is the usage API the request was counted under ("": none).
	API    string
	Status int // the HTTP status (499: the client left before the answer)
	// ErrorType and ErrorCode are the error envelope's type and code, for
	// a refused request; Limit names the limit that refused a 429 or 402.
	ErrorType, ErrorCode, Limit string
	Latency                     time.Duration
	// IP is the client's address as the host's IPMode keeps it: whole,
	// truncated to its /24 or /48, or not at all (the zero Addr).
	IP netip.Addr
	// UserAgent is the client's User-Agent, at most MaxUserAgentLen bytes
	// of printable ASCII (any other byte is a '?'). A user agent, path
	// segment or request ID holding a key is kept as "[key redacted]".
	UserAgent     string
	RequestBytes  int64
	ResponseBytes int64
}

// Bounds on an entry's text.
const (
	MaxPathLen      = 256
	MaxUserAgentLen = 256
	MaxRequestIDLen = 128
)

// entryJSON is Entry in the API's shape.
type entryJSON struct {
	RequestID     string    `json:"request_id"`
	Timestamp     time.Time `json:"timestamp"`
	KeyID         *string   `json:"key_id"`
	Environment   *string   `json:"environment"`
	Method        string    `json:"method"`
	Path          string    `json:"path"`
	API           *string   `json:"api"`
	Status        int       `json:"status"`
	ErrorType     *string   `json:"error_type"`
	ErrorCode     *string   `json:"error_code"`
	Limit         *string   `json:"limit"`
	LatencyMS     float64   `json:"latency_ms"`
	IP            *string   `json:"ip"`
	UserAgent     *string   `json:"user_agent"`
	RequestBytes  int64     `json:"request_bytes"`
	ResponseBytes int64     `json:"response_bytes"`
}

func orNull(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// MarshalJSON writes the entry as the API shows it: every field present,
// null when empty, the latency in milliseconds (to the microsecond), and
// no account.
func (e Entry) MarshalJSON() ([]byte, error) {
	j := entryJSON{
		RequestID: e.RequestID, Timestamp: e.Timestamp.UTC(), KeyID: orNull(e.KeyID), Environment: orNull(e.Environment),
		Method: e.Method, Path: e.Path, API: orNull(e.API), Status: e.Status,
		ErrorType: orNull(e.ErrorType), ErrorCode: orNull(e.ErrorCode), Limit: orNull(e.Limit),
		LatencyMS: float64(e.Latency.Microseconds()) / 1000, UserAgent: orNull(e.UserAgent),
		RequestBytes: e.RequestBytes, ResponseBytes: e.ResponseBytes,
	}
	if e.IP.IsValid() {
		j.IP = orNull(e.IP.String())
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON writes (for clients in Go and the
// tests).
func (e *Entry) UnmarshalJSON(b []byte) error {
	var j entryJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	val := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	*e = Entry{RequestID: j.RequestID, Timestamp: j.Timestamp, KeyID: val(j.KeyID), Environment: val(j.Environment),
		Method: j.Method, Path: j.Path, API: val(j.API), Status: j.Status, ErrorType: val(j.ErrorType), ErrorCode: val(j.ErrorCode),
		Limit: val(j.Limit), Latency: time.Duration(j.LatencyMS * float64(time.Millisecond)), UserAgent: val(j.UserAgent),
		RequestBytes: j.RequestBytes, ResponseBytes: j.ResponseBytes}
	if j.IP != nil {
		ip, err := netip.ParseAddr(*j.IP)
		if err != nil {
			return err
		}
		e.IP = ip
	}
	return nil
}

// Status selects entries by status: one code (429), or a class (4xx is
// 400 to 499). The zero Status selects every entry.
type Status struct {
	Min, Max int // inclusive; 0, 0: any
}

// ParseStatus reads a status filter: a code from 100 to 599 ("429") or a
// class from 1xx to 5xx ("4xx").
func ParseStatus(s string) (Status, error) {
	if len(s) == 3 && (s[1] == 'x' || s[1] == 'X') && (s[2] == 'x' || s[2] == 'X') && s[0] >= '1' && s[0] <= '5' {
		c := int(s[0]-'0') * 100
		return Status{Min: c, Max: c + 99}, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || len(s) != 3 || n < 100 || n > 599 {
		return Status{}, errors.New("status must be a code such as 429 or a class such as 4xx")
	}
	return Status{Min: n, Max: n}, nil
}

// Filter selects an account's entries (Manager.Logs). Every field is
// optional; entries are listed newest first.
type Filter struct {
	Start, End time.Time // [Start, End); zero: the whole window
	KeyID      string
	Status     Status
	Method     string
	API        string
	RequestID  string
	// Limit is how many entries a page holds, 1 to MaxLimit; 0: DefaultLimit.
	Limit int
	// Cursor is a page's NextCursor, to read the page after it.
	Cursor string
}

// Page sizes.
const (
	DefaultLimit = 20
	MaxLimit     = 100
)

// Page is one page of entries, newest first, in the shape of the key
// list: NextCursor reads the next page when HasMore.
type Page struct {
	Data       []Entry `json:"data"`
	HasMore    bool    `json:"has_more"`
	NextCursor string  `json:"next_cursor,omitempty"`
}

// Exporter takes every entry the library records, those of no account
// included, to the host's own pipeline (keysotel.LogExporter sends them
// as OpenTelemetry log records). Export is called from the Manager's
// flusher with a batch of entries it must not keep (copy what it holds
// on to); it should return quickly, and a failure is counted as dropped
// entries, not retried. The store keeps its window whatever the exporter
// does.
type Exporter interface {
	Export(ctx context.Context, entries []Entry) error
}

// IPMode says how much of the client's address an entry keeps.
type IPMode uint8

const (
	// IPTruncated keeps the network: an IPv4 address's /24, an IPv6
	// address's /48 (the default: enough to tell a customer's office
	// from a stranger's network, not enough to single out a person, so
	// the log holds no personal data by default).
	IPTruncated IPMode = iota
	// IPFull keeps the whole address.
	IPFull
	// IPNone keeps none.
	IPNone
)

// Apply is ip as the mode keeps it.
func (m IPMode) Apply(ip netip.Addr) netip.Addr {
	ip = ip.Unmap()
	switch {
	case m == IPNone || !ip.IsValid():
		return netip.Addr{}
	case m == IPFull:
		return ip.WithZone("")
	case ip.Is4():
		p, _ := ip.Prefix(24)
		return p.Addr()
	}
	p, _ := ip.WithZone("").Prefix(48)
	return p.Addr()
}

// Config configures the request log (keys.WithRequestLogs). The zero
// Config is the defaults.
type Config struct {
	// Retention is how long entries are kept: DefaultRetention when 0,
	// from one hour to 400 days.
	Retention time.Duration
	// PerAccountDay bounds the entries one account keeps a UTC day
	// (DefaultPerAccountDay when 0): past it the store drops them, and
	// counts them, so one tenant's flood cannot crowd another's entries
	// or the disk.
	PerAccountDay int
	// Buffer is how many entries may wait in memory for the next flush
	// (DefaultBuffer when 0), split among rings, two per processor (a
	// core writes one ring, and spills into the others when it is full):
	// an entry that finds every ring full is dropped, and counted, rather
	// than slow a request. A failing store keeps twice Buffer waiting
	// besides.
	Buffer int
	// IP is how much of the client's address is kept (IPTruncated when
	// zero).
	IP IPMode
	// Exporter, if not nil, receives every entry too.
	Exporter Exporter
	// Disabled records nothing, on a store that keeps logs too.
	Disabled bool
}

// The defaults.
const (
	DefaultRetention     = 7 * 24 * time.Hour
	DefaultPerAccountDay = 1_000_000
	DefaultBuffer        = 1 << 15
	// FlushInterval is how often the buffer is written: a process killed
	// at once loses one interval of entries at most.
	FlushInterval = time.Second
)
