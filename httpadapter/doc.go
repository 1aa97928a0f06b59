// Package httpadapter serves the TXCloud DevEx key endpoints and
// authenticates requests with API keys, for any net/http server.
//
// New returns the handler for POST and GET /developers/keys and GET, PATCH
// and DELETE /developers/keys/{id} and POST /developers/keys/{id}/roll,
// relative to where the host mounts it:
//
//	mux.Handle("/v1/developers/", http.StripPrefix("/v1", httpadapter.New(m)))
//
// Middleware wraps any handler so that only requests bearing a valid key
// reach it, with the verified key in the request context
// (keys.FromContext):
//
//	mux.Handle("GET /v1/whoami", httpadapter.Middleware(m)(whoami))
//
// Every failure is answered in the TXCloud error envelope:
//
//	{"error": {"type": "...", "code": "...", "message": "...", "param": "...", "request_id": "req_..."}}
//
// and every response to a rate-limited key carries X-RateLimit-Limit,
// -Remaining, -Reset and -Window.
package httpadapter
