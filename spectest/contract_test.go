package spectest

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/txcloud/keys/httpadapter"
)

// seedPath is the contract this library implements: the TXCloud seed
// document, committed in api/ so that a clone with nothing beside it
// tests against it. TestSeedIsTheSharedSpec keeps it byte-identical to
// ../shared/spec/devex-create-key.yaml.
const (
	seedPath = "../api/txcloud-devex-create-key.yaml"
	ownPath  = "../api/openapi.yaml"
)

func load(t *testing.T, path string) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(path)
	if err != nil {
		t.Fatalf("loading %s: %v", path, err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("%s is not a valid OpenAPI document: %v", path, err)
	}
	return doc
}

// contract holds both documents' routers.
type contract struct {
	seed, own routers.Router
	errorDoc  *openapi3.Schema
}

func newContract(t *testing.T) *contract {
	seed, err := gorillamux.NewRouter(load(t, seedPath))
	if err != nil {
		t.Fatal(err)
	}
	ownDoc := load(t, ownPath)
	own, err := gorillamux.NewRouter(ownDoc)
	if err != nil {
		t.Fatal(err)
	}
	return &contract{seed: seed, own: own, errorDoc: ownDoc.Components.Schemas["Error"].Value}
}

// exception is a rule the server enforces that no schema of the document
// can express. A request the document calls valid may be refused for one
// of these, and for nothing else. Each is listed, in these words, in the
// HTTP API guide (TestExceptionsAreInTheGuide).
type exception struct {
	words string // as the guide lists it
	match func(status int, d httpadapter.ErrorDetail) bool
}

var exceptions = []exception{
	{"`expires_at` must be in the future", func(s int, d httpadapter.ErrorDetail) bool {
		return s == 400 && d.Param == "expires_at" && strings.Contains(d.Message, "future")
	}},
	{"each `allowed_ips` entry must be a real address or prefix (the pattern admits `1.2.3` or `10.0.0.0/33`)", func(s int, d httpadapter.ErrorDetail) bool {
		return s == 400 && strings.HasPrefix(d.Param, "allowed_ips[")
	}},
	{"a JSON body may not give a field twice", func(s int, d httpadapter.ErrorDetail) bool {
		return s == 400 && d.Message == "field appears more than once"
	}},
	{"a query parameter may be given once, and only the documented ones", func(s int, d httpadapter.ErrorDetail) bool {
		return s == 400 && (d.Message == "unknown query parameter" || strings.HasPrefix(d.Message, "give "))
	}},
	{"`Idempotency-Key` may be sent once", func(s int, d httpadapter.ErrorDetail) bool {
		return s == 400 && d.Param == "Idempotency-Key" && strings.Contains(d.Message, "one Idempotency-Key")
	}},
	{"`cursor` must be one this API returned", func(s int, d httpadapter.ErrorDetail) bool {
		return s == 400 && d.Param == "cursor"
	}},
	{"a body may be at most 64 KiB (413)", func(s int, d httpadapter.ErrorDetail) bool {
		return s == 413
	}},
	{"a JSON body must be UTF-8: another `charset` is a 415", func(s int, d httpadapter.ErrorDetail) bool {
		return s == 415 && strings.Contains(d.Message, "UTF-8")
	}},
	{"a body must hold exactly one JSON object, with nothing after it", func(s int, d httpadapter.ErrorDetail) bool {
		return s == 400 && strings.Contains(d.Message, "exactly one JSON object")
	}},
	{"`metadata` must be at most 4096 bytes once compacted, nested at most 8 deep, with no name twice in one object", func(s int, d httpadapter.ErrorDetail) bool {
		return s == 400 && d.Param == "metadata"
	}},
	{"`rate_limit` may not exceed the account plan's requests per minute (a plan is the host's, per account)", func(s int, d httpadapter.ErrorDetail) bool {
		return s == 400 && d.Param == "rate_limit" && strings.Contains(d.Message, "plan")
	}},
	{"a usage period: `start` before `end`, both whole minutes (a series: on its granularity's boundaries, at most 1,440 buckets), at most 400 days, and whole hours when older than 48 hours", func(s int, d httpadapter.ErrorDetail) bool {
		return s == 400 && (d.Param == "start" || d.Param == "end")
	}},
	{"a webhook `url` must be https (plain http only where the host allows it), reach a public address (not loopback, private, link-local, multicast or a cloud metadata service) and carry no user, password or fragment", func(s int, d httpadapter.ErrorDetail) bool {
		return s == 400 && d.Param == "url"
	}},
	{"a webhook `description` holds no control characters", func(s int, d httpadapter.ErrorDetail) bool {
		return s == 400 && d.Param == "description" && strings.Contains(d.Message, "control")
	}},
	{"a delivery is retried by hand at most 10 times beyond its schedule, and not while it is being attempted", func(s int, d httpadapter.ErrorDetail) bool {
		return s == 400 && d.Code == "invalid_request" && strings.Contains(d.Message, "attempted")
	}},
	{"the key's state: a revoked, rolled or expired key cannot be changed or rolled", func(s int, d httpadapter.ErrorDetail) bool {
		return s == 400 && d.Code == "invalid_request" && d.Param == "" &&
			(strings.Contains(d.Message, "revoked or already rolled") || strings.Contains(d.Message, "has expired"))
	}},
}

// exceptionsUsed records which exceptions the suites exercised.
var exceptionsUsed sync.Map

func validationRefusal(status int) bool { return status == 400 || status == 413 || status == 415 }

var filterOptions = &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true, MultiError: true}

// check holds one exchange to api/openapi.yaml in both directions:
//
//   - the response is one the operation documents (status, headers, body);
//   - a request the server accepted (2xx) validates against the document;
//   - a request the document calls valid is not refused as invalid (400,
//     413, 415), unless for one of the exceptions.
//
// A create's 201 is also checked against the seed. A request no operation
// matches (an unknown path or method) must be answered in the envelope.
func (c *contract) check(t *testing.T, req *http.Request, body []byte, rec *httptest.ResponseRecorder) {
	t.Helper()
	if err := c.validate(req, body, rec); err != nil {
		t.Fatal(err)
	}
}

func (c *contract) validate(req *http.Request, body []byte, rec *httptest.ResponseRecorder) error {
	ctx := context.Background()
	routed := routedRequest(req, body)
	route, params, err := c.own.FindRoute(routed)
	if err != nil { // no operation: the envelope alone
		if rec.Code < 400 {
			return fmt.Errorf("%d for a request no operation documents (%s %s)", rec.Code, req.Method, req.URL.Path)
		}
		return c.envelope(rec)
	}
	in := &openapi3filter.RequestValidationInput{Request: routed, PathParams: params, Route: route, Options: filterOptions}
	reqErr := openapi3filter.ValidateRequest(ctx, in)
	switch {
	case rec.Code < 300 && reqErr != nil:
		return fmt.Errorf("the server accepted (%d) a request api/openapi.yaml calls invalid: %v", rec.Code, reqErr)
	case reqErr == nil && validationRefusal(rec.Code):
		var env httpadapter.ErrorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil {
			return fmt.Errorf("error body is not the envelope: %s", rec.Body)
		}
		found := false
		for _, e := range exceptions {
			if e.match(rec.Code, env.Error) {
				exceptionsUsed.Store(e.words, true)
				found = true
				break
			}
		}
		if !found {
			return fmt.Errorf("the server refused (%d) a request api/openapi.yaml calls valid, for no listed exception: %s", rec.Code, rec.Body)
		}
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: rec.Code, Header: rec.Header(), Options: filterOptions}
	out.SetBodyBytes(rec.Body.Bytes())
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		return fmt.Errorf("%d response breaks api/openapi.yaml: %v\n%.500s", rec.Code, err, rec.Body)
	}
	if route.Operation.OperationID == "createAPIKey" && rec.Code == http.StatusCreated {
		return c.seedCreate(req, body, rec)
	}
	return nil
}

// seedCreate checks a created key against the seed document itself,
// request and response.
func (c *contract) seedCreate(req *http.Request, body []byte, rec *httptest.ResponseRecorder) error {
	ctx := context.Background()
	routed := routedRequest(req, body)
	route, params, err := c.seed.FindRoute(routed)
	if err != nil {
		return fmt.Errorf("the seed has no route for a create: %v", err)
	}
	in := &openapi3filter.RequestValidationInput{Request: routed, PathParams: params, Route: route, Options: filterOptions}
	if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
		return fmt.Errorf("the server created a key for a request the seed calls invalid: %v", err)
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: rec.Code, Header: rec.Header(), Options: filterOptions}
	out.SetBodyBytes(rec.Body.Bytes())
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		return fmt.Errorf("a 201 breaks the seed: %v\n%s", err, rec.Body)
	}
	return nil
}

func (c *contract) envelope(rec *httptest.ResponseRecorder) error {
	var v any
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		return fmt.Errorf("error body is not JSON: %s", rec.Body)
	}
	if err := c.errorDoc.VisitJSON(v); err != nil {
		return fmt.Errorf("%d body does not match the error envelope: %v\n%s", rec.Code, err, rec.Body)
	}
	return nil
}

// routedRequest is req as the documents see it: their servers end in /v1,
// where the adapter is mounted.
func routedRequest(req *http.Request, body []byte) *http.Request {
	routed := req.Clone(context.Background())
	routed.URL.Scheme, routed.URL.Host, routed.URL.Path = "https", "api.txcloud.io", "/v1"+req.URL.Path
	routed.URL.RawPath = ""
	routed.Body = io.NopCloser(bytes.NewReader(body))
	routed.ContentLength = int64(len(body))
	return routed
}

// TestMain, after a full run (no -run filter), insists that the suites
// exercised every exception: one that nothing needs any more must go,
// from the table and the guide.
func TestMain(m *testing.M) {
	code := m.Run()
	// Only a run of every test can tell an exception nothing needed: not
	// one of some tests (-run), nor a listing (-list), which runs none.
	ran := func(name string) string {
		if f := flag.Lookup(name); f != nil {
			return f.Value.String()
		}
		return ""
	}
	if code == 0 && ran("test.run") == "" && ran("test.list") == "" {
		for _, e := range exceptions {
			if _, ok := exceptionsUsed.Load(e.words); !ok {
				fmt.Fprintf(os.Stderr, "no exchange needed the exception %q: remove it, or add the exchange that does\n", e.words)
				code = 1
			}
		}
	}
	os.Exit(code)
}

// guide is the HTTP API guide, whose section "What the document cannot
// say" lists the exceptions, one bullet each.
const guide = "../docs/http-api.md"

// The guide lists every exception, in the words above, and nothing else:
// a bullet of its list that no exception has is a rule the document does
// not hold the server to.
func TestExceptionsAreInTheGuide(t *testing.T) {
	text, err := os.ReadFile(guide)
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(text), "### What the document cannot say\n")
	if !ok {
		t.Fatalf("%s has no section \"What the document cannot say\"", guide)
	}
	if i := strings.Index(section, "\n#"); i >= 0 {
		section = section[:i]
	}
	listed := map[string]bool{}
	for _, line := range strings.Split(section, "\n") {
		if item, ok := strings.CutPrefix(line, "- "); ok {
			listed[item] = true
		}
	}
	for _, e := range exceptions {
		if !listed[e.words] {
			t.Errorf("%s does not list the exception %q", guide, e.words)
		}
		delete(listed, e.words)
	}
	for item := range listed {
		t.Errorf("%s lists %q, which is no exception of the suites: remove it, or add it to the exceptions with its match", guide, item)
	}
	if len(exceptions) == 0 {
		t.Fatal("no exceptions: the check reads nothing")
	}
}
