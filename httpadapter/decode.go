package httpadapter

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/credits"
)

// checkJSON refuses bodies that do not say they are JSON.
func checkJSON(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return badRequest(http.StatusUnsupportedMediaType, "", "Content-Type must be application/json")
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return badRequest(http.StatusUnsupportedMediaType, "", "Content-Type must be application/json")
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return badRequest(http.StatusUnsupportedMediaType, "", "JSON bodies must be UTF-8")
	}
	return nil
}

// readBody reads at most limit bytes; more is a 413.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return nil, badRequest(http.StatusRequestEntityTooLarge, "", fmt.Sprintf("request body must be at most %d bytes", limit))
	case err != nil:
		return nil, badRequest(http.StatusBadRequest, "", "could not read the request body")
	}
	return body, nil
}

// decodeObject walks a body that must be exactly one JSON object, handing
// each field to field once: a field twice (parsers disagree on which copy
// wins, so the ambiguity is refused) or a malformed body is an error.
func decodeObject(body []byte, field func(name string, raw json.RawMessage) error) error {
	return decodeObjectIn("", body, field)
}

// decodeObjectIn is decodeObject for an object inside the body, whose
// fields' params are named under prefix ("credits.", say).
func decodeObjectIn(prefix string, body []byte, field func(name string, raw json.RawMessage) error) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	tok, err := dec.Token()
	if err == io.EOF {
		return badRequest(http.StatusBadRequest, "", "request body is empty; send a JSON object")
	}
	if d, ok := tok.(json.Delim); err != nil || !ok || d != '{' {
		return badRequest(http.StatusBadRequest, "", "request body must be a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return malformed()
		}
		name := tok.(string) // inside an object, json.Decoder yields keys as strings
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return malformed()
		}
		if seen[name] {
			return invalidParam(paramName(prefix+name), "field appears more than once")
		}
		seen[name] = true
		if err := field(name, raw); err != nil {
			return err
		}
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return malformed()
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest(http.StatusBadRequest, "", "request body must hold exactly one JSON object")
	}
	return nil
}

// The fields of the create and update bodies, each decoded to its schema
// type with its name as the error's param.
func nameField(raw json.RawMessage) (string, error) { return decodeString(raw, "name") }
func permissionsField(raw json.RawMessage) ([]string, error) {
	return decodeStrings(raw, "permissions")
}
func allowedIPsField(raw json.RawMessage) ([]string, error) {
	return decodeStrings(raw, "allowed_ips")
}
func rateLimitField(raw json.RawMessage) (int, error) {
	return decodeInt(raw, "rate_limit", "an integer (requests per minute)")
}
func expiresAtField(raw json.RawMessage) (time.Time, error) { return decodeTime(raw, "expires_at") }
func ownerIDField(raw json.RawMessage) (string, error)      { return decodeString(raw, "owner_id") }
func enabledField(raw json.RawMessage) (bool, error) {
	switch string(raw) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, wrongType("enabled", "true or false")
}

// metadataField takes the raw object; the Manager checks it (an object,
// its size and depth) and compacts it.
func metadataField(raw json.RawMessage) (json.RawMessage, error) {
	if raw[0] != '{' {
		return nil, wrongType("metadata", "a JSON object")
	}
	return raw, nil
}

// creditsField decodes the credits object, {"remaining": n, "refill":
// {"interval": "daily"|"monthly", "amount": n}}, as strictly as the body:
// no field twice, none unknown, remaining required. A refill left out, or
// null, is none.
func creditsField(raw json.RawMessage) (credits.Budget, error) {
	var c credits.Budget
	remaining := false
	if raw[0] != '{' {
		return c, wrongType("credits", "an object: {\"remaining\": n, \"refill\": {\"interval\": \"daily\" or \"monthly\", \"amount\": n}}")
	}
	err := decodeObjectIn("credits.", raw, func(name string, raw json.RawMessage) error {
		switch name {
		case "remaining":
			n, err := decodeInt64(raw, "credits.remaining", "an integer", credits.Max)
			c.Remaining, remaining = n, true
			return err
		case "refill":
			if isNull(raw) {
				return nil
			}
			r, err := refillField(raw)
			c.Refill = &r
			return err
		}
		return unknownField("credits." + name)
	})
	if err == nil && !remaining {
		err = &keys.ValidationError{Code: "missing_parameter", Param: "credits.remaining", Message: "credits.remaining is required"}
	}
	return c, err
}

func refillField(raw json.RawMessage) (credits.Refill, error) {
	var r credits.Refill
	if raw[0] != '{' {
		return r, wrongType("credits.refill", "an object: {\"interval\": \"daily\" or \"monthly\", \"amount\": n}")
	}
	err := decodeObjectIn("credits.refill.", raw, func(name string, raw json.RawMessage) error {
		switch name {
		case "interval":
			s, err := decodeString(raw, "credits.refill.interval")
			r.Interval = credits.Interval(s)
			return err
		case "amount":
			n, err := decodeInt64(raw, "credits.refill.amount", "an integer", credits.Max)
			r.Amount = n
			return err
		}
		return unknownField("credits.refill." + name)
	})
	return r, err
}

// DecodeCreate parses a create body strictly: exactly one JSON object; no
// field twice; no field the schema lacks; each field of its schema type
// (null is none of them: leave an optional field out instead). A malformed
// body is invalid_request; a field of the wrong type or an unknown field is
// invalid_parameter naming it. Values are checked by keys.Manager, not here.
func DecodeCreate(body []byte) (keys.APIKeyCreate, error) {
	var req keys.APIKeyCreate
	err := decodeObject(body, func(name string, raw json.RawMessage) error {
		if isNull(raw) && createFields[name] {
			return invalidParam(name, name+" may not be null; leave it out instead")
		}
		var err error
		switch name {
		case "name":
			req.Name, err = nameField(raw)
		case "environment":
			var s string
			s, err = decodeString(raw, "environment")
			req.Environment = keys.Environment(s)
		case "permissions":
			req.Permissions, err = permissionsField(raw)
		case "allowed_ips":
			req.AllowedIPs, err = allowedIPsField(raw)
		case "rate_limit":
			var n int
			n, err = rateLimitField(raw)
			req.RateLimit = &n
		case "expires_at":
			var t time.Time
			t, err = expiresAtField(raw)
			req.ExpiresAt = &t
		case "owner_id":
			req.OwnerID, err = ownerIDField(raw)
			if err == nil && req.OwnerID == "" {
				err = invalidParam("owner_id", "owner_id must not be empty; leave it out instead")
			}
		case "metadata":
			req.Metadata, err = metadataField(raw)
		case "enabled":
			var on bool
			on, err = enabledField(raw)
			req.Disabled = !on
		case "credits":
			var c credits.Budget
			c, err = creditsField(raw)
			req.Credits = &c
		default:
			err = unknownField(name)
		}
		return err
	})
	return req, err
}

// createFields are the fields of a create body.
var createFields = map[string]bool{"name": true, "environment": true, "permissions": true, "allowed_ips": true, "rate_limit": true, "expires_at": true,
	"owner_id": true, "metadata": true, "enabled": true, "credits": true}

// DecodeUpdate parses a PATCH body with DecodeCreate's strictness. A field
// absent stays as it is; null clears it (the Manager refuses to clear the
// name); environment cannot change.
func DecodeUpdate(body []byte) (keys.APIKeyUpdate, error) {
	var u keys.APIKeyUpdate
	err := decodeObject(body, func(name string, raw json.RawMessage) error {
		var err error
		switch name {
		case "name":
			u.Name, err = patch(raw, nameField)
		case "permissions":
			u.Permissions, err = patch(raw, permissionsField)
		case "allowed_ips":
			u.AllowedIPs, err = patch(raw, allowedIPsField)
		case "rate_limit":
			u.RateLimit, err = patch(raw, rateLimitField)
		case "expires_at":
			u.ExpiresAt, err = patch(raw, expiresAtField)
		case "owner_id":
			u.OwnerID, err = patch(raw, ownerIDField)
		case "metadata":
			u.Metadata, err = patch(raw, metadataField)
		case "enabled":
			u.Enabled, err = patch(raw, enabledField)
		case "credits":
			u.Credits, err = patch(raw, creditsField)
		case "environment":
			err = invalidParam("environment", "a key's environment cannot change; create a key instead")
		default:
			err = unknownField(name)
		}
		return err
	})
	return u, err
}

// patch is a present field of a PATCH body: null clears, a value changes.
func patch[T any](raw json.RawMessage, decode func(json.RawMessage) (T, error)) (keys.Patch[T], error) {
	if isNull(raw) {
		return keys.Clear[T](), nil
	}
	v, err := decode(raw)
	return keys.Change(v), err
}

// decodeRoll parses the optional roll body {"grace_period_seconds": n}.
// An empty body, or one without the field, means a grace period of 0.
func decodeRoll(body []byte) (time.Duration, error) { return decodeGrace(body, 0) }

// decodeGrace parses {"grace_period_seconds": n}; an empty body, or one
// without the field, is def.
func decodeGrace(body []byte, def time.Duration) (time.Duration, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return def, nil
	}
	secs := int(def / time.Second)
	err := decodeObject(body, func(name string, raw json.RawMessage) error {
		if name != "grace_period_seconds" {
			return unknownField(name)
		}
		if isNull(raw) {
			return invalidParam(name, name+" may not be null; leave it out for 0")
		}
		var err error
		secs, err = decodeInt(raw, "grace_period_seconds", "an integer number of seconds")
		return err
	})
	return time.Duration(secs) * time.Second, err
}

func malformed() error {
	return badRequest(http.StatusBadRequest, "", "request body is not valid JSON")
}

func invalidParam(param, message string) error {
	return &Error{Status: http.StatusBadRequest, Type: TypeValidation, Code: "invalid_parameter", Param: param, Message: message}
}

func unknownField(name string) error { return invalidParam(paramName(name), "unknown field") }

// paramName keeps an echoed field name short.
func paramName(name string) string {
	if len(name) > 64 {
		return name[:64]
	}
	return name
}

func wrongType(param, want string) error { return invalidParam(param, param+" must be "+want) }

func isNull(raw json.RawMessage) bool { return string(raw) == "null" }

func decodeString(raw json.RawMessage, param string) (string, error) {
	var s string
	if raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", wrongType(param, "a string")
	}
	return s, nil
}

func decodeStrings(raw json.RawMessage, param string) ([]string, error) {
	var items []json.RawMessage
	if raw[0] != '[' || json.Unmarshal(raw, &items) != nil {
		return nil, wrongType(param, "an array of strings")
	}
	out := make([]string, len(items))
	for i, it := range items {
		var err error
		if out[i], err = decodeString(it, fmt.Sprintf("%s[%d]", param, i)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// decodeInt takes a JSON integer literal (not a string, a fraction or an
// exponent). Values beyond the int64 range are refused; others are clamped
// to just outside any bound the Manager sets, so the Manager's one rule
// reports them without an int overflow on the way.
func decodeInt(raw json.RawMessage, param, want string) (int, error) {
	v, err := decodeInt64(raw, param, want, 1<<31-1) // 2^31 s still fits a time.Duration
	return int(v), err
}

// decodeInt64 is decodeInt with a ceiling of the caller's: values are
// clamped to [-1, ceiling+1].
func decodeInt64(raw json.RawMessage, param, want string, ceiling int64) (int64, error) {
	var n json.Number
	if raw[0] == '"' || json.Unmarshal(raw, &n) != nil {
		return 0, wrongType(param, want)
	}
	v, err := strconv.ParseInt(n.String(), 10, 64)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) && ne.Err == strconv.ErrRange {
			return 0, invalidParam(param, param+" is out of range")
		}
		return 0, wrongType(param, want)
	}
	return min(max(v, -1), ceiling+1), nil
}

func decodeTime(raw json.RawMessage, param string) (time.Time, error) {
	s, err := decodeString(raw, param)
	if err != nil {
		return time.Time{}, err
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, wrongType(param, "an RFC 3339 date-time such as 2030-01-02T15:04:05Z")
	}
	return t, nil
}
