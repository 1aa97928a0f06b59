package portal

import (
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/txcloud/keys/internal/sentinel"
	"github.com/txcloud/keys/usage"
)

// usagePage is the usage page: a chart of requests per hour (the last 24
// hours) or per day (the last 30 days), the totals of the same period,
// their split by API and what they cost; for the account, or one key.
type usagePage struct {
	Granularity string
	KeyID       string
	KeyName     string
	Chart       chart
	Summary     *usage.Summary
	APIs        []apiRow
	NotKept     bool
}

type apiRow struct {
	Name string
	usage.Totals
}

func (p *Portal) usagePage(w http.ResponseWriter, r *http.Request, v *visit) {
	q := r.URL.Query()
	pg := usagePage{Granularity: q.Get("granularity"), KeyID: q.Get("key_id")}
	g := usage.Hour
	switch pg.Granularity {
	case "", "hour":
		pg.Granularity = "hour"
	case "day":
		g = usage.Day
	default:
		p.failed(w, r, v, errBadParam("granularity", "granularity is hour or day"))
		return
	}
	if pg.KeyID != "" {
		k, err := v.as.Get(r.Context(), pg.KeyID)
		if err != nil {
			p.failed(w, r, v, err)
			return
		}
		pg.KeyName = k.Name
	}
	series, err := v.as.KeyUsage(r.Context(), pg.KeyID, g, time.Time{}, time.Time{}) // the Manager's default period: a day of hours, or 30 days
	if errors.Is(err, sentinel.ErrUsageNotKept) {
		pg.NotKept = true
		p.render(w, r, http.StatusOK, "usage", v, pg)
		return
	}
	if err != nil {
		p.failed(w, r, v, err)
		return
	}
	sum, err := v.as.UsageSummary(r.Context(), usage.Filter{Start: series.Period.Start, End: series.Period.End, KeyID: pg.KeyID})
	if err != nil {
		p.failed(w, r, v, err)
		return
	}
	pg.Summary = sum
	for name, t := range sum.ByAPI {
		pg.APIs = append(pg.APIs, apiRow{name, t})
	}
	sort.Slice(pg.APIs, func(i, j int) bool { return pg.APIs[i].Name < pg.APIs[j].Name })
	pg.Chart = drawChart(series, g)
	p.render(w, r, http.StatusOK, "usage", v, pg)
}

// chart is a stacked bar chart in SVG coordinates, drawn on the server:
// each bar's successful requests at the bottom, then the failed ones a
// limit did not refuse, then the rate-limited ones.
type chart struct {
	W, H          int     // the viewBox
	Left, Bottom  float64 // the plot area's left edge and baseline
	Right, Top    float64
	Bars          []bar
	YTicks        []tick
	XTicks        []tick
	Empty         bool
	MidX, MidY    float64 // where "no requests" is written
	Desc          string
	Buckets       []usage.Bucket
	BucketLabel   string
	BucketFormat  string
	Successful    int64
	Failed        int64
	FailedOther   int64 // failed, not by a rate limit
	RateLimitHits int64
}

type bar struct {
	X, W  float64
	Segs  []seg
	Title string
}

type seg struct {
	Y, H  float64
	Class string
}

type tick struct {
	Pos   float64
	Label string
}

const (
	chartW, chartH                              = 720, 260
	chartLeft, chartRight, chartTop, chartBelow = 56.0, 8.0, 12.0, 28.0
)

func drawChart(s *usage.Series, g usage.Granularity) chart {
	c := chart{W: chartW, H: chartH, Left: chartLeft, Right: chartW - chartRight, Top: chartTop, Bottom: chartH - chartBelow, Buckets: s.Data}
	c.BucketFormat, c.BucketLabel = "15:04", "Hour (UTC)"
	if g == usage.Day {
		c.BucketFormat, c.BucketLabel = "Jan 02", "Day (UTC)"
	}
	var most int64
	for _, b := range s.Data {
		most = max(most, b.TotalRequests)
		c.Successful += b.Successful
		c.Failed += b.Failed
		c.RateLimitHits += b.RateLimitHits
	}
	c.FailedOther = c.Failed - c.RateLimitHits
	c.Empty = most == 0
	c.MidX, c.MidY = (c.Left+c.Right)/2, (c.Top+c.Bottom)/2
	top := niceCeil(most)
	plotH := c.Bottom - c.Top
	step := (c.Right - c.Left) / float64(max(len(s.Data), 1))
	every := max(len(s.Data)/6, 1)
	for i, b := range s.Data {
		x := c.Left + float64(i)*step
		br := bar{X: x + step*0.12, W: step * 0.76}
		y := c.Bottom
		for _, part := range []struct {
			n     int64
			class string
		}{{b.Successful, "ok"}, {b.Failed - b.RateLimitHits, "failed"}, {b.RateLimitHits, "limited"}} {
			if part.n <= 0 {
				continue
			}
			h := float64(part.n) / float64(top) * plotH
			y -= h
			br.Segs = append(br.Segs, seg{Y: y, H: h, Class: part.class})
		}
		end := b.Start.Add(g.Duration())
		br.Title = fmt.Sprintf("%s–%s UTC: %d successful, %d failed, %d rate-limited", b.Start.UTC().Format(c.BucketFormat), end.UTC().Format(c.BucketFormat),
			b.Successful, b.Failed-b.RateLimitHits, b.RateLimitHits)
		if g == usage.Day {
			br.Title = fmt.Sprintf("%s UTC: %d successful, %d failed, %d rate-limited", b.Start.UTC().Format("2006-01-02"), b.Successful, b.Failed-b.RateLimitHits, b.RateLimitHits)
		}
		c.Bars = append(c.Bars, br)
		if i%every == 0 {
			c.XTicks = append(c.XTicks, tick{Pos: x + step/2, Label: b.Start.UTC().Format(c.BucketFormat)})
		}
	}
	for i := int64(0); i <= 4; i++ {
		v := top * i / 4
		c.YTicks = append(c.YTicks, tick{Pos: c.Bottom - float64(v)/float64(top)*plotH, Label: strconv.FormatInt(v, 10)})
	}
	c.Desc = fmt.Sprintf("Requests per %s from %s to %s UTC: %d successful, %d failed, %d of them rate-limited.", g,
		s.Period.Start.UTC().Format("2006-01-02 15:04"), s.Period.End.UTC().Format("2006-01-02 15:04"), c.Successful, c.Failed, c.RateLimitHits)
	return c
}

// niceCeil is the smallest of 4, 8, 20, 40, 80, 200, … (four ticks of a
// round step) at or above n.
func niceCeil(n int64) int64 {
	for unit := int64(1); ; unit *= 10 {
		for _, m := range []int64{4, 8, 20} {
			if m*unit >= n {
				return m * unit
			}
		}
	}
}
