// Package httpadapter serves the TXCloud DevEx key endpoints and
// authenticates requests with API keys, for any net/http server.
//
// New returns an Adapter: one configured value whose options apply to
// everything it does. As an http.Handler it serves POST and GET
// /developers/keys, GET, PATCH and DELETE /developers/keys/{id} and POST
// /developers/keys/{id}/roll, relative to where the host mounts it:
//
//	a := httpadapter.New(m)
//	mux.Handle("/v1/developers/", http.StripPrefix("/v1", a))
//
// Its Middleware lets through only requests whose caller authenticates and
// holds the route's permissions, with the verified key in the request
// context (keys.FromContext):
//
//	mux.Handle("GET /v1/whoami", a.Middleware()(whoami))
//	mux.Handle("GET /v1/reports", a.Middleware("transactions:read")(reports))
//
// Every failure is answered in the TXCloud error envelope, by the endpoints,
// the middleware, and a host's own handlers through WriteError:
//
//	{"error": {"type": "...", "code": "...", "message": "...", "param": "...", "request_id": "req_..."}}
//
// Every response to a request that a key's rate limit counted (successes
// and 429s) carries X-RateLimit-Limit, -Remaining, -Reset and -Window.
// Requests refused before the limiter (a bad key, a disallowed IP, a
// missing permission) do not spend the limit, and carry none.
package httpadapter
