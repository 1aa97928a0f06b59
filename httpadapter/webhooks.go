package httpadapter

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/event"
	"github.com/txcloud/keys/internal/httpjson"
	"github.com/txcloud/keys/reqlog"
	"github.com/txcloud/keys/webhook"
)

// events answers GET /developers/events: a page of the account's event
// log, newest first.
func (a *Adapter) events(w http.ResponseWriter, r *http.Request, as keys.Scoped) error {
	f, err := eventFilter(r)
	if err != nil {
		return err
	}
	l, err := as.Events(r.Context(), f)
	if err != nil {
		return err
	}
	return writeLarge(w, r, l)
}

// event answers GET /developers/events/{id}.
func (a *Adapter) event(w http.ResponseWriter, r *http.Request, as keys.Scoped) error {
	if err := noParams(r); err != nil {
		return err
	}
	e, err := as.Event(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, e)
	return nil
}

// noParams refuses any query parameter.
func noParams(r *http.Request) error {
	return eachParam(r.URL.Query(), func(name, _ string) error {
		return invalidParam(paramName(name), "unknown query parameter")
	})
}

// eventFilter reads the query of GET /developers/events: type, key_id,
// start and end (RFC 3339), limit (1 to 100) and cursor, each at most
// once; any other parameter is an error.
func eventFilter(r *http.Request) (event.Filter, error) {
	var f event.Filter
	err := eachParam(r.URL.Query(), func(name, v string) error {
		var err error
		switch name {
		case "type":
			if !event.Type(v).Known() {
				return invalidParam("type", "type must be one of the event types")
			}
			f.Type = event.Type(v)
		case "key_id":
			f.KeyID, err = textParam(name, v, 256)
		case "start":
			f.Start, err = timeParam(name, v)
		case "end":
			f.End, err = timeParam(name, v)
		case "cursor":
			f.Cursor, err = textParam(name, v, 512)
		case "limit":
			f.Limit, err = limitParam(v)
		default:
			return invalidParam(paramName(name), "unknown query parameter")
		}
		return err
	})
	return f, err
}

// limitParam is a page's limit: 1 to 100 (reqlog.MaxLimit, as every list).
func limitParam(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > reqlog.MaxLimit {
		return 0, invalidParam("limit", "limit must be an integer from 1 to 100")
	}
	return n, nil
}

// DecodeWebhookCreate parses the body of POST /developers/webhooks
// strictly: url and events required; environment, description and
// enabled optional;
// no other field, no field twice, no null.
func DecodeWebhookCreate(body []byte) (webhook.EndpointCreate, error) {
	var req webhook.EndpointCreate
	seen := map[string]bool{}
	err := decodeObject(body, func(name string, raw json.RawMessage) error {
		if isNull(raw) {
			return invalidParam(paramName(name), paramName(name)+" may not be null; leave it out instead")
		}
		seen[name] = true
		var err error
		switch name {
		case "environment":
			req.Environment, err = decodeString(raw, "environment")
		case "url":
			req.URL, err = decodeString(raw, "url")
		case "events":
			req.Events, err = decodeStrings(raw, "events")
		case "description":
			req.Description, err = decodeString(raw, "description")
		case "enabled":
			var on bool
			on, err = enabledField(raw)
			req.Enabled = &on
		default:
			err = unknownField(name)
		}
		return err
	})
	switch {
	case err != nil:
		return req, err
	case !seen["url"]:
		return req, &Error{Status: http.StatusBadRequest, Type: TypeValidation, Code: "missing_parameter", Param: "url", Message: "url is required"}
	case !seen["events"]:
		return req, &Error{Status: http.StatusBadRequest, Type: TypeValidation, Code: "missing_parameter", Param: "events", Message: "events is required"}
	}
	return req, nil
}

// DecodeWebhookUpdate parses the body of PATCH /developers/webhooks/{id}:
// any of url, events, description and enabled; none may be null.
func DecodeWebhookUpdate(body []byte) (webhook.EndpointUpdate, error) {
	var u webhook.EndpointUpdate
	err := decodeObject(body, func(name string, raw json.RawMessage) error {
		if isNull(raw) {
			return invalidParam(paramName(name), paramName(name)+" may not be null")
		}
		switch name {
		case "url":
			s, err := decodeString(raw, "url")
			u.URL = &s
			return err
		case "events":
			ev, err := decodeStrings(raw, "events")
			u.Events = &ev
			return err
		case "description":
			s, err := decodeString(raw, "description")
			u.Description = &s
			return err
		case "enabled":
			on, err := enabledField(raw)
			u.Enabled = &on
			return err
		}
		return unknownField(name)
	})
	return u, err
}

func (a *Adapter) createWebhook(w http.ResponseWriter, r *http.Request, as keys.Scoped) error {
	opts, err := issueOptions(r)
	if err != nil {
		return err
	}
	body, err := a.jsonBody(w, r)
	if err != nil {
		return err
	}
	req, err := DecodeWebhookCreate(body)
	if err != nil {
		return err
	}
	ep, err := as.Webhooks().Create(r.Context(), req, opts...)
	if err != nil {
		return err
	}
	if ep.Replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	httpjson.Write(w, http.StatusCreated, ep)
	return nil
}

func (a *Adapter) listWebhooks(w http.ResponseWriter, r *http.Request, as keys.Scoped) error {
	if err := noParams(r); err != nil {
		return err
	}
	l, err := as.Webhooks().List(r.Context())
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, l)
	return nil
}

func (a *Adapter) getWebhook(w http.ResponseWriter, r *http.Request, as keys.Scoped) error {
	if err := noParams(r); err != nil {
		return err
	}
	ep, err := as.Webhooks().Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, ep)
	return nil
}

func (a *Adapter) updateWebhook(w http.ResponseWriter, r *http.Request, as keys.Scoped) error {
	body, err := a.jsonBody(w, r)
	if err != nil {
		return err
	}
	u, err := DecodeWebhookUpdate(body)
	if err != nil {
		return err
	}
	ep, err := as.Webhooks().Update(r.Context(), r.PathValue("id"), u)
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, ep)
	return nil
}

func (a *Adapter) deleteWebhook(w http.ResponseWriter, r *http.Request, as keys.Scoped) error {
	if err := as.Webhooks().Delete(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *Adapter) rollWebhookSecret(w http.ResponseWriter, r *http.Request, as keys.Scoped) error {
	opts, err := issueOptions(r)
	if err != nil {
		return err
	}
	// The old secret signs beside the new one for 24 hours, unless the
	// body says less.
	var body []byte
	if r.ContentLength != 0 || r.Header.Get("Content-Type") != "" {
		if body, err = a.jsonBody(w, r); err != nil {
			return err
		}
	}
	grace, err := decodeGrace(body, 24*time.Hour)
	if err != nil {
		return err
	}
	ep, err := as.Webhooks().RollSecret(r.Context(), r.PathValue("id"), grace, opts...)
	if err != nil {
		return err
	}
	if ep.Replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	httpjson.Write(w, http.StatusOK, ep)
	return nil
}

func (a *Adapter) testWebhook(w http.ResponseWriter, r *http.Request, as keys.Scoped) error {
	d, err := as.Webhooks().Test(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusAccepted, d)
	return nil
}

func (a *Adapter) deliveries(w http.ResponseWriter, r *http.Request, as keys.Scoped) error {
	var limit int
	var cursor string
	if err := eachParam(r.URL.Query(), func(name, v string) error {
		var err error
		switch name {
		case "limit":
			limit, err = limitParam(v)
		case "cursor":
			cursor, err = textParam(name, v, 512)
		default:
			err = invalidParam(paramName(name), "unknown query parameter")
		}
		return err
	}); err != nil {
		return err
	}
	l, err := as.Webhooks().Deliveries(r.Context(), r.PathValue("id"), limit, cursor)
	if err != nil {
		return err
	}
	return writeLarge(w, r, l)
}

func (a *Adapter) retryDelivery(w http.ResponseWriter, r *http.Request, as keys.Scoped) error {
	d, err := as.Webhooks().Retry(r.Context(), r.PathValue("id"), r.PathValue("delivery_id"))
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusAccepted, d)
	return nil
}
