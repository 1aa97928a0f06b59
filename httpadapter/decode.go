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

// DecodeCreate parses a create body strictly: exactly one JSON object; no
// field twice (parsers disagree on which copy wins, so the ambiguity is
// refused); no field the schema lacks; each field of its schema type, or
// null for "absent". A malformed body is invalid_request; a field of the
// wrong type or an unknown field is invalid_parameter naming it. Values are
// checked by keys.Manager, not here.
func DecodeCreate(body []byte) (keys.APIKeyCreate, error) {
	var req keys.APIKeyCreate
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	tok, err := dec.Token()
	if err == io.EOF {
		return req, badRequest(http.StatusBadRequest, "", "request body is empty; send a JSON object")
	}
	if d, ok := tok.(json.Delim); err != nil || !ok || d != '{' {
		return req, badRequest(http.StatusBadRequest, "", "request body must be a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return req, malformed()
		}
		name := tok.(string) // inside an object, json.Decoder yields keys as strings
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return req, malformed()
		}
		if seen[name] {
			return req, &httpError{status: http.StatusBadRequest, typ: TypeValidation, code: keys.CodeInvalidParameter, param: paramName(name), message: "field appears more than once"}
		}
		seen[name] = true
		if err := decodeField(&req, name, raw); err != nil {
			return req, err
		}
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return req, malformed()
	}
	if _, err := dec.Token(); err != io.EOF {
		return req, badRequest(http.StatusBadRequest, "", "request body must hold exactly one JSON object")
	}
	return req, nil
}

func malformed() error {
	return badRequest(http.StatusBadRequest, "", "request body is not valid JSON")
}

// paramName keeps an echoed field name short.
func paramName(name string) string {
	if len(name) > 64 {
		return name[:64]
	}
	return name
}

func wrongType(param, want string) error {
	return &httpError{status: http.StatusBadRequest, typ: TypeValidation, code: keys.CodeInvalidParameter, param: param, message: param + " must be " + want}
}

func isNull(raw json.RawMessage) bool { return string(raw) == "null" }

func decodeField(req *keys.APIKeyCreate, name string, raw json.RawMessage) error {
	if isNull(raw) {
		return nil // null is absent; required fields are then missing_parameter
	}
	switch name {
	case "name":
		return decodeString(raw, "name", &req.Name)
	case "environment":
		var s string
		if err := decodeString(raw, "environment", &s); err != nil {
			return err
		}
		req.Environment = keys.Environment(s)
	case "permissions":
		return decodeStrings(raw, "permissions", &req.Permissions)
	case "allowed_ips":
		return decodeStrings(raw, "allowed_ips", &req.AllowedIPs)
	case "rate_limit":
		var n json.Number
		if raw[0] == '"' || json.Unmarshal(raw, &n) != nil {
			return wrongType("rate_limit", "an integer (requests per minute)")
		}
		v, err := strconv.ParseInt(n.String(), 10, 64)
		if err != nil {
			var ne *strconv.NumError
			if errors.As(err, &ne) && ne.Err == strconv.ErrRange {
				return &httpError{status: http.StatusBadRequest, typ: TypeValidation, code: keys.CodeInvalidParameter, param: "rate_limit", message: "rate_limit is out of range"}
			}
			return wrongType("rate_limit", "an integer (requests per minute)")
		}
		// Clamp to just outside the valid range, so the Manager's one rule
		// reports it, without an int overflow on the way.
		i := int(min(max(v, 0), keys.MaxRateLimit+1))
		req.RateLimit = &i
	case "expires_at":
		var s string
		if err := decodeString(raw, "expires_at", &s); err != nil {
			return err
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return wrongType("expires_at", "an RFC 3339 date-time such as 2030-01-02T15:04:05Z")
		}
		req.ExpiresAt = &t
	default:
		return &httpError{status: http.StatusBadRequest, typ: TypeValidation, code: keys.CodeInvalidParameter, param: paramName(name), message: "unknown field"}
	}
	return nil
}

func decodeString(raw json.RawMessage, param string, dst *string) error {
	if raw[0] != '"' || json.Unmarshal(raw, dst) != nil {
		return wrongType(param, "a string")
	}
	return nil
}

func decodeStrings(raw json.RawMessage, param string, dst *[]string) error {
	if raw[0] != '[' {
		return wrongType(param, "an array of strings")
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return wrongType(param, "an array of strings")
	}
	out := make([]string, len(items))
	for i, it := range items {
		p := fmt.Sprintf("%s[%d]", param, i)
		if len(it) == 0 || it[0] != '"' || json.Unmarshal(it, &out[i]) != nil {
			return wrongType(p, "a string")
		}
	}
	*dst = out
	return nil
}
