package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// PlotCmd is `switchboard bench plot`: it reads bench results (the --json output of conns,
// fanout and rpc runs, concatenated or as a JSON array) and writes SVG charts (server memory
// against connections, latency against offered load, fan-out throughput against subscribers)
// and summary.md, Markdown tables side by side per label with ratios when there are two labels
// (second / first). Results are grouped into series by their label.
type PlotCmd struct {
	In  string `help:"File of bench JSON results." required:"" type:"existingfile"`
	Out string `help:"Directory for memory.svg, latency.svg, throughput.svg and summary.md." required:""`
}

// Run renders the charts; it writes only the charts for which results exist.
func (c *PlotCmd) Run(ctx context.Context) error {
	b, err := os.ReadFile(c.In)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	rs, err := decodeResults(b)
	if err != nil {
		return fmt.Errorf("plot: %s: %w", c.In, err)
	}
	if err := os.MkdirAll(c.Out, 0o755); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	charts := buildCharts(rs)
	if len(charts) == 0 {
		return errors.New("plot: no conns or fanout results to plot")
	}
	srs, err := decodeAll[summaryResult](b)
	if err != nil {
		return fmt.Errorf("plot: %s: %w", c.In, err)
	}
	var sum bytes.Buffer
	writeSummary(&sum, srs)
	if err := os.WriteFile(filepath.Join(c.Out, "summary.md"), sum.Bytes(), 0o644); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	for name, ch := range charts {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var buf bytes.Buffer
		ch.render(&buf)
		path := filepath.Join(c.Out, name)
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			return fmt.Errorf("plot: %w", err)
		}
		fmt.Fprintln(output, "wrote", path)
	}
	return nil
}

// plotResult holds the fields of any result kind that the charts use.
type plotResult struct {
	Kind         string  `json:"kind"`
	Label        string  `json:"label"`
	Established  int64   `json:"established"`
	RSSAfter     uint64  `json:"server_rss_after"`
	RSSPerConn   float64 `json:"server_rss_per_conn"`
	Subscribers  int     `json:"subscribers"`
	OfferedRate  float64 `json:"offered_rate"`
	DeliveryRate float64 `json:"deliveries_per_second"`
	Latency      Latency `json:"latency"`
}

func decodeResults(b []byte) ([]plotResult, error) { return decodeAll[plotResult](b) }

// decodeAll reads a JSON array of T or a stream of concatenated T values.
func decodeAll[T any](b []byte) ([]T, error) {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '[' {
		var rs []T
		if err := json.Unmarshal(b, &rs); err != nil {
			return nil, err
		}
		return rs, nil
	}
	var rs []T
	dec := json.NewDecoder(bytes.NewReader(b))
	for {
		var r T
		err := dec.Decode(&r)
		if errors.Is(err, io.EOF) {
			return rs, nil
		}
		if err != nil {
			return nil, err
		}
		rs = append(rs, r)
	}
}

func buildCharts(rs []plotResult) map[string]*chart {
	mem := &chart{Title: "Server RSS with idle subscribed connections", XLabel: "connections", YLabel: "RSS (MiB)"}
	lat := &chart{Title: "Fan-out latency at fixed offered load", XLabel: "offered deliveries per second", YLabel: "latency (ms)"}
	thr := &chart{Title: "Fan-out throughput, one channel, publishing as fast as possible", XLabel: "subscribers", YLabel: "deliveries per second"}
	for _, r := range rs {
		label := r.Label
		if label == "" {
			label = "unlabelled"
		}
		switch r.Kind {
		case "conns":
			if r.RSSAfter > 0 && r.Established > 0 {
				mem.add(label, float64(r.Established), mib(r.RSSAfter))
			}
		case "fanout":
			if r.OfferedRate > 0 && r.Latency.Count > 0 {
				x := r.OfferedRate * float64(r.Subscribers)
				lat.add(label+" p99", x, r.Latency.P99)
				lat.add(label+" p50", x, r.Latency.P50)
			} else if r.OfferedRate == 0 && r.DeliveryRate > 0 {
				thr.add(label, float64(r.Subscribers), r.DeliveryRate)
			}
		}
	}
	out := map[string]*chart{}
	for name, c := range map[string]*chart{"memory.svg": mem, "latency.svg": lat, "throughput.svg": thr} {
		if len(c.Series) > 0 {
			out[name] = c
		}
	}
	return out
}

type point struct{ X, Y float64 }

type series struct {
	Name   string
	Points []point
}

// chart is a minimal SVG line chart with linear axes starting at zero.
type chart struct {
	Title, XLabel, YLabel string
	Series                []*series
}

func (c *chart) add(name string, x, y float64) {
	for _, s := range c.Series {
		if s.Name == name {
			s.Points = append(s.Points, point{x, y})
			return
		}
	}
	c.Series = append(c.Series, &series{Name: name, Points: []point{{x, y}}})
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"}

// niceStep returns a round tick step so that max/step is about n.
func niceStep(max float64, n int) float64 {
	if max <= 0 {
		return 1
	}
	raw := max / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			return m * mag
		}
	}
	return 10 * mag
}

func fmtTick(v float64) string {
	switch {
	case v >= 1e6 && math.Mod(v, 1e5) == 0:
		return fmt.Sprintf("%gM", v/1e6)
	case v >= 1e3 && math.Mod(v, 100) == 0:
		return fmt.Sprintf("%gk", v/1e3)
	default:
		return fmt.Sprintf("%g", math.Round(v*1000)/1000)
	}
}

func (c *chart) render(w io.Writer) {
	const W, H = 720.0, 440.0
	const left, right, top, bottom = 80.0, 200.0, 50.0, 60.0
	pw, ph := W-left-right, H-top-bottom
	var maxX, maxY float64
	for _, s := range c.Series {
		sort.Slice(s.Points, func(i, j int) bool { return s.Points[i].X < s.Points[j].X })
		for _, p := range s.Points {
			maxX = math.Max(maxX, p.X)
			maxY = math.Max(maxY, p.Y)
		}
	}
	xs, ys := niceStep(maxX, 5), niceStep(maxY, 5)
	maxX = math.Max(xs, math.Ceil(maxX/xs)*xs)
	maxY = math.Max(ys, math.Ceil(maxY/ys)*ys)
	px := func(x float64) float64 { return left + x/maxX*pw }
	py := func(y float64) float64 { return top + ph - y/maxY*ph }

	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%g" height="%g" viewBox="0 0 %g %g" font-family="sans-serif" font-size="12">`+"\n", W, H, W, H)
	fmt.Fprintf(w, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(w, `<text x="%g" y="28" font-size="15" font-weight="bold">%s</text>`+"\n", left, html.EscapeString(c.Title))
	for v := 0.0; v <= maxX+xs/2; v += xs {
		fmt.Fprintf(w, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", px(v), top, px(v), top+ph)
		fmt.Fprintf(w, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", px(v), top+ph+18, fmtTick(v))
	}
	for v := 0.0; v <= maxY+ys/2; v += ys {
		fmt.Fprintf(w, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, py(v), left+pw, py(v))
		fmt.Fprintf(w, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, py(v)+4, fmtTick(v))
	}
	fmt.Fprintf(w, `<rect x="%g" y="%g" width="%g" height="%g" fill="none" stroke="#333"/>`+"\n", left, top, pw, ph)
	fmt.Fprintf(w, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", left+pw/2, H-18, html.EscapeString(c.XLabel))
	fmt.Fprintf(w, `<text x="18" y="%.1f" text-anchor="middle" transform="rotate(-90 18 %.1f)">%s</text>`+"\n", top+ph/2, top+ph/2, html.EscapeString(c.YLabel))
	for i, s := range c.Series {
		col := palette[i%len(palette)]
		dash := ""
		if strings.HasSuffix(s.Name, " p50") {
			dash = ` stroke-dasharray="6 4"`
		}
		var pts []string
		for _, p := range s.Points {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(p.X), py(p.Y)))
		}
		fmt.Fprintf(w, `<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/>`+"\n", col, dash, strings.Join(pts, " "))
		for _, p := range s.Points {
			fmt.Fprintf(w, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"><title>%s: %s, %s</title></circle>`+"\n",
				px(p.X), py(p.Y), col, html.EscapeString(s.Name), fmtTick(p.X), fmtTick(p.Y))
		}
		ly := top + 10 + float64(i)*20
		fmt.Fprintf(w, `<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="%s" stroke-width="2"%s/>`+"\n", left+pw+15, ly, left+pw+40, ly, col, dash)
		fmt.Fprintf(w, `<text x="%g" y="%.1f">%s</text>`+"\n", left+pw+46, ly+4, html.EscapeString(s.Name))
	}
	fmt.Fprintln(w, "</svg>")
}
