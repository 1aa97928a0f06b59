// Package httpjson writes the JSON bodies of httpadapter and the packages
// beside it, with the headers every one of them carries.
package httpjson

import (
	"encoding/json"
	"net/http"
)

// Write answers status with v as JSON.
func Write(w http.ResponseWriter, status int, v any) {
	SetHeaders(w.Header())
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // headers are sent: a write error can only be dropped
}

// SetHeaders sets the headers of every JSON body, errors included.
// no-store: the 201s hold secrets, and nothing else is worth caching.
func SetHeaders(h http.Header) {
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
}
