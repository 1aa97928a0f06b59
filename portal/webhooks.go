package portal

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/event"
	"github.com/txcloud/keys/webhook"
)

// recentDeliveries is how many deliveries an endpoint's page shows.
const recentDeliveries = 20

func (p *Portal) webhookList(w http.ResponseWriter, r *http.Request, v *visit) {
	list, err := v.as.Webhooks().List(r.Context())
	if err != nil {
		p.failed(w, r, v, err)
		return
	}
	p.render(w, r, http.StatusOK, "webhooks", v, list.Data)
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
	f := newForm()
	f.Nonce = r.PostFormValue("nonce")
	if !madeByUs(f.Nonce) {
		p.forbidden(w, r)
		return
	}
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
		Environment: f.Values["environment"]}, keys.IdempotencyKey("portal_"+f.Nonce))
	if err != nil {
		if f.refuse(err, webhookFields...) {
			p.render(w, r, http.StatusBadRequest, "webhooknew", v, p.webhookFormPage(v, f))
			return
		}
		p.failed(w, r, v, err)
		return
	}
	p.showSecret(w, r, v, secretPage{Kind: "webhook", Name: ep.URL, Secret: string(ep.Secret), Replayed: ep.Replayed,
		Link: p.c.Path + "/webhooks/" + url.PathEscape(ep.ID)})
}

type webhookPage struct {
	Endpoint   *webhook.Endpoint
	Deliveries []webhook.Delivery
	Notice     string
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
	pg := webhookPage{Endpoint: ep, Deliveries: ds.Data}
	if r.URL.Query().Get("done") == "tested" {
		pg.Notice = "A webhook.test event is on its way; its delivery is listed below."
	}
	p.render(w, r, http.StatusOK, "webhook", v, pg)
}

func (p *Portal) webhookTest(w http.ResponseWriter, r *http.Request, v *visit) {
	id := r.PathValue("id")
	if _, err := v.as.Webhooks().Test(r.Context(), id); err != nil {
		p.failed(w, r, v, err)
		return
	}
	http.Redirect(w, r, p.c.Path+"/webhooks/"+url.PathEscape(id)+"?done=tested", http.StatusSeeOther)
}
