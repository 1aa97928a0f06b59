package portal

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/txcloud/keys/event"
	"github.com/txcloud/keys/webhook"
)

// recentDeliveries is how many deliveries an endpoint's page shows.
const recentDeliveries = 20

type webhooksPage struct {
	Endpoints []webhook.Endpoint
	Notice    string
}

func (p *Portal) webhookList(w http.ResponseWriter, r *http.Request, v *visit) {
	list, err := v.as.Webhooks().List(r.Context())
	if err != nil {
		p.failed(w, r, v, err)
		return
	}
	pg := webhooksPage{Endpoints: list.Data}
	if r.URL.Query().Get("done") == "deleted" {
		pg.Notice = "The endpoint is deleted, with its deliveries."
	}
	p.render(w, r, http.StatusOK, "webhooks", v, pg)
}

type webhookFormPage struct {
	Form   *form
	Events []string
	Envs   []string
}

func (p *Portal) webhookFormPage(v *visit, f *form) webhookFormPage {
	pg := webhookFormPage{Form: f, Envs: envs(v), Events: []string{"*"}}
	for _, t := range event.Types() {
		pg.Events = append(pg.Events, string(t))
	}
	return pg
}

func (p *Portal) webhookNew(w http.ResponseWriter, r *http.Request, v *visit) {
	f := newForm()
	f.Values["environment"] = envs(v)[0]
	f.Checked["*"] = true
	f.Nonce = randomID()
	p.render(w, r, http.StatusOK, "webhooknew", v, p.webhookFormPage(v, f))
}

// webhookFields are the endpoint form's fields.
var webhookFields = []string{"url", "events", "description", "environment"}

func (p *Portal) webhookCreate(w http.ResponseWriter, r *http.Request, v *visit) {
	nonce, idem, ok := p.formNonce(w, r)
	if !ok {
		return
	}
	f := newForm()
	f.Nonce = nonce
	for _, name := range []string{"url", "description", "environment"} {
		f.Values[name] = strings.TrimSpace(r.PostFormValue(name))
	}
	evs := r.PostForm["events"]
	for _, e := range evs {
		f.Checked[e] = true
	}
	if len(evs) == 0 {
		f.Errors["events"] = "Choose at least one event type."
		p.render(w, r, http.StatusBadRequest, "webhooknew", v, p.webhookFormPage(v, f))
		return
	}
	ep, err := v.as.Webhooks().Create(r.Context(), webhook.EndpointCreate{URL: f.Values["url"], Events: evs, Description: f.Values["description"],
		Environment: f.Values["environment"]}, idem)
	if err != nil {
		if f.refuse(err, webhookFields...) {
			p.render(w, r, http.StatusBadRequest, "webhooknew", v, p.webhookFormPage(v, f))
			return
		}
		p.failed(w, r, v, err)
		return
	}
	p.showSecret(w, r, v, secretPage{Words: endpointCreated, Name: ep.URL, Secret: string(ep.Secret), Replayed: ep.Replayed,
		Link: p.c.Path + "/webhooks/" + url.PathEscape(ep.ID)})
}

type webhookPage struct {
	Endpoint   *webhook.Endpoint
	Deliveries []webhook.Delivery
	Notice     string
	Nonce      string // the roll form's idempotency key
	MaxGrace   int    // the roll's longest grace, in hours
}

// webhookNotices are what an endpoint's page says after an action.
var webhookNotices = map[string]string{
	"tested":   "A webhook.test event is on its way; its delivery is listed below.",
	"enabled":  "The endpoint is enabled: it hears its events again.",
	"disabled": "The endpoint is disabled: its events are kept, their deliveries skipped, until you enable it.",
	"retried":  "The delivery is due again now.",
}

func (p *Portal) webhookShow(w http.ResponseWriter, r *http.Request, v *visit) {
	hooks := v.as.Webhooks()
	id := r.PathValue("id")
	ep, err := hooks.Get(r.Context(), id)
	if err != nil {
		p.failed(w, r, v, err)
		return
	}
	ds, err := hooks.Deliveries(r.Context(), id, recentDeliveries, "")
	if err != nil {
		p.failed(w, r, v, err)
		return
	}
	pg := webhookPage{Endpoint: ep, Deliveries: ds.Data, Notice: webhookNotices[r.URL.Query().Get("done")], Nonce: randomID(), MaxGrace: endpointGraceHours}
	p.render(w, r, http.StatusOK, "webhook", v, pg)
}

// doneWebhook sends the browser back to the endpoint's page, saying what
// was done.
func (p *Portal) doneWebhook(w http.ResponseWriter, r *http.Request, id, what string) {
	http.Redirect(w, r, p.c.Path+"/webhooks/"+url.PathEscape(id)+"?done="+what, http.StatusSeeOther)
}

func (p *Portal) webhookTest(w http.ResponseWriter, r *http.Request, v *visit) {
	id := r.PathValue("id")
	if _, err := v.as.Webhooks().Test(r.Context(), id); err != nil {
		p.failed(w, r, v, err)
		return
	}
	p.doneWebhook(w, r, id, "tested")
}

func (p *Portal) webhookEnable(w http.ResponseWriter, r *http.Request, v *visit) {
	p.setEndpointEnabled(w, r, v, true)
}

func (p *Portal) webhookDisable(w http.ResponseWriter, r *http.Request, v *visit) {
	p.setEndpointEnabled(w, r, v, false)
}

func (p *Portal) setEndpointEnabled(w http.ResponseWriter, r *http.Request, v *visit, on bool) {
	id := r.PathValue("id")
	if _, err := v.as.Webhooks().Update(r.Context(), id, webhook.EndpointUpdate{Enabled: &on}); err != nil {
		p.failed(w, r, v, err)
		return
	}
	p.doneWebhook(w, r, id, map[bool]string{true: "enabled", false: "disabled"}[on])
}

// webhookRollSecret gives the endpoint a new signing secret, shown once;
// the old one signs beside it for the grace given in hours (at most 24).
// The form's nonce makes a resubmit replay the first roll: a second roll
// would end the grace of the secret the receiver still holds.
func (p *Portal) webhookRollSecret(w http.ResponseWriter, r *http.Request, v *visit) {
	id := r.PathValue("id")
	idem, grace, ok := p.rollForm(w, r, v, endpointGraceHours)
	if !ok {
		return
	}
	ep, err := v.as.Webhooks().RollSecret(r.Context(), id, grace, idem)
	if err != nil {
		p.failed(w, r, v, err)
		return
	}
	pg := secretPage{Words: endpointSecretRolled, Name: ep.URL, Secret: string(ep.Secret), Replayed: ep.Replayed,
		Link: p.c.Path + "/webhooks/" + url.PathEscape(ep.ID)}
	if grace > 0 {
		pg.Note = "The previous secret also signs each delivery until " + when(ep.UpdatedAt.Add(grace)) + ": switch your receiver to the new one before then."
	}
	p.showSecret(w, r, v, pg)
}

func (p *Portal) webhookDeleteConfirm(w http.ResponseWriter, r *http.Request, v *visit) {
	ep, err := v.as.Webhooks().Get(r.Context(), r.PathValue("id"))
	if err != nil {
		p.failed(w, r, v, err)
		return
	}
	p.render(w, r, http.StatusOK, "webhookdelete", v, ep)
}

func (p *Portal) webhookDelete(w http.ResponseWriter, r *http.Request, v *visit) {
	if err := v.as.Webhooks().Delete(r.Context(), r.PathValue("id")); err != nil {
		p.failed(w, r, v, err)
		return
	}
	http.Redirect(w, r, p.c.Path+"/webhooks?done=deleted", http.StatusSeeOther)
}

// webhookRetry makes one of the endpoint's deliveries due now.
func (p *Portal) webhookRetry(w http.ResponseWriter, r *http.Request, v *visit) {
	id := r.PathValue("id")
	if _, err := v.as.Webhooks().Retry(r.Context(), id, r.PathValue("delivery_id")); err != nil {
		p.failed(w, r, v, err)
		return
	}
	p.doneWebhook(w, r, id, "retried")
}
