package httpadapter

import (
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/internal/httpjson"
	"github.com/txcloud/keys/internal/refusal"
	"github.com/txcloud/keys/limit"
)

// ErrorBody is the TXCloud error envelope.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the object inside the envelope. Param is omitted when no
// single field is at fault; RetryAfter only accompanies a 429, or a 402
// of credits that will be refilled.
type ErrorDetail struct {
	Type       string `json:"type"`
	Code       string `json:"code"`
	Message    string `json:"message"`
	Param      string `json:"param,omitempty"`
	RequestID  string `json:"request_id"`
	RetryAfter *int   `json:"retry_after,omitempty"`
	// Limit names the limit a 429 hit: key, account_minute, account_day,
	// endpoint, concurrency or management; of a 402, the budget that ran
	// out: key_credits or account_credits.
	Limit string `json:"limit,omitempty"`
}

// StatusClientClosedRequest (499, nginx's) is the status of a request
// whose client went away before the answer: the adapter answers it (to
// nobody), logs no error for it, and counts it in usage as failed. It is
// never a store's failure, so a client that cancels its requests raises
// no alarm.
const StatusClientClosedRequest = 499

// Error types, one per status class of the envelope.
const (
	TypeValidation     = "validation_error"
	TypeAuthentication = "authentication_error"
	TypeAuthorization  = "authorization_error"
	TypeNotFound       = "not_found_error"
	TypeIdempotency    = "idempotency_error"
	TypeRateLimit      = "rate_limit_error"
	TypeCredits        = "credits_error"
	TypeAPI            = "api_error"
)

// Error is a failure already in the envelope's terms: the adapter's own
// (a bad header, a malformed body), or a host's, for WriteError to answer
// as it is. Type should be one of the Type constants, the envelope's enum.
type Error struct {
	Status  int
	Type    string
	Code    string
	Param   string // omitted when empty
	Message string // sent to the client: no secrets, no internals
}

func (e *Error) Error() string { return e.Message }

func badRequest(status int, param, message string) *Error {
	return &Error{Status: status, Type: TypeValidation, Code: "invalid_request", Param: param, Message: message}
}

var (
	errNoCredentials = errors.New("missing API key: send Authorization: Bearer <key>")
	errBadAuthHeader = errors.New("malformed Authorization header: send Authorization: Bearer <key>")
)

// describe maps an error to the envelope. The keys package's errors are
// classified once, for this adapter and the gRPC one, by
// internal/refusal; this is the one place their kinds become statuses and
// types. Messages are fixed strings or come from the library's own
// errors, which never hold a key.
func describe(err error) (status int, d ErrorDetail) {
	var he *Error
	switch {
	case errors.As(err, &he):
		return he.Status, ErrorDetail{Type: he.Type, Code: he.Code, Param: he.Param, Message: he.Message}
	case errors.Is(err, errNoCredentials), errors.Is(err, errBadAuthHeader):
		return http.StatusUnauthorized, ErrorDetail{Type: TypeAuthentication, Code: "unauthorized", Message: err.Error()}
	}
	r := refusal.Of(err)
	status, typ := r.Kind.HTTP()
	d = ErrorDetail{Type: typ, Code: r.Code, Message: r.Message, Param: r.Param}
	switch r.Kind {
	case refusal.RateLimited:
		secs := retryAfterSeconds(r.RetryAfter)
		d.Message += "; retry after " + strconv.Itoa(secs) + "s"
		d.RetryAfter = &secs
		d.Limit = r.Limit
	case refusal.CreditsExhausted:
		// 402: the key is valid and within its rate limits, but its
		// budget cannot pay for the request. Not a 429: waiting does not
		// help, unless a refill is due (then retry_after says when).
		if r.RetryAfter > 0 {
			secs := retryAfterSeconds(r.RetryAfter)
			d.RetryAfter = &secs
		}
		d.Limit = r.Limit // which budget ran out: key_credits or account_credits
	}
	return status, d
}

// retryAfterSeconds rounds up: a client that waits the advertised seconds
// must succeed.
func retryAfterSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

// WriteError answers err in the error envelope, as the adapter answers its
// own failures: the keys package's errors get their statuses and codes, an
// *Error is answered as it is, and anything else is a 500 internal_error
// whose details go only to the log. Server faults (5xx) are logged with the
// request ID, so an operator can match a client's report to the cause.
func (a *Adapter) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	c := a.c
	status, d := describe(err)
	h := w.Header()
	// The ID the response already carries (the middleware's and the
	// endpoints' own), or a new one.
	if d.RequestID = h.Get("Request-Id"); d.RequestID == "" {
		d.RequestID = c.requestID(r)
		h.Set("Request-Id", d.RequestID)
	}
	httpjson.SetHeaders(h)
	if sw, ok := w.(*statusWriter); ok { // for the request log
		sw.errType, sw.errCode, sw.limit = d.Type, d.Code, d.Limit
	}
	if status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="api"`)
	}
	if d.RetryAfter != nil {
		h.Set("Retry-After", strconv.Itoa(*d.RetryAfter))
	}
	if status >= 500 {
		c.logger.LogAttrs(r.Context(), slog.LevelError, "keys: request failed", slog.String("request_id", d.RequestID), slog.Int("status", status), slog.Any("err", err))
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(ErrorBody{Error: d})
}

// setRateLimitHeaders describes the tightest limit that applied to the
// request (see limit.Limiter) on every response, successes included:
// X-RateLimit-Window is 60 for a per-minute limit, 86400 for the plan's
// daily quota.
func setRateLimitHeaders(h http.Header, rl limit.Status) {
	if rl.Limit <= 0 {
		return
	}
	h.Set("X-RateLimit-Limit", strconv.Itoa(rl.Limit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(rl.Remaining))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(ceilUnix(rl.Reset), 10))
	window := rl.Name.Window()
	if window == 0 {
		window = limit.Window
	}
	h.Set("X-RateLimit-Window", strconv.Itoa(int(window/time.Second)))
}

// setCreditsHeader reports a key's credits after the request
// (X-Credits-Remaining) when the request spent some, or was refused for
// lack of them.
func setCreditsHeader(h http.Header, v *keys.Verified, err error) {
	var ce *keys.CreditsError
	switch {
	case err == nil && v.Spent > 0:
		h.Set("X-Credits-Remaining", strconv.FormatInt(v.Credits, 10))
	case err != nil && errors.As(err, &ce):
		h.Set("X-Credits-Remaining", strconv.FormatInt(ce.Credits.Remaining, 10))
	}
}

func ceilUnix(t time.Time) int64 {
	s := t.Unix()
	if t.Nanosecond() > 0 {
		s++
	}
	return s
}
