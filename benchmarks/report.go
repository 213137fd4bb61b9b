package benchmarks

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"
)

// summary holds the medians of each (implementation, case).
type summary map[[2]string]Result

func summarize(results []Result) summary {
	groups := map[[2]string][]Result{}
	for _, r := range results {
		k := [2]string{r.Impl, r.Case}
		groups[k] = append(groups[k], r)
	}
	s := summary{}
	for k, rs := range groups {
		s[k] = Result{
			Impl: k[0], Case: k[1], Msgs: rs[0].Msgs,
			// Elapsed is chosen so that Rate is the median rate.
			Elapsed:    time.Duration(float64(rs[0].Msgs) / median(rs, Result.Rate) * float64(time.Second)),
			Allocs:     median(rs, func(r Result) float64 { return r.Allocs }),
			AllocBytes: median(rs, func(r Result) float64 { return r.AllocBytes }),
			P50:        time.Duration(median(rs, func(r Result) float64 { return float64(r.P50) })),
			P99:        time.Duration(median(rs, func(r Result) float64 { return float64(r.P99) })),
			Max:        time.Duration(median(rs, func(r Result) float64 { return float64(r.Max) })),
			PeakRSS:    int64(median(rs, func(r Result) float64 { return float64(r.PeakRSS) })),
		}
	}
	return s
}

func median(rs []Result, f func(Result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	if n := len(v); n%2 == 0 {
		return (v[n/2-1] + v[n/2]) / 2
	}
	return v[len(v)/2]
}

func (s summary) get(system, face, cas string) (Result, bool) {
	r, ok := s[[2]string{system + "/" + face, cas}]
	return r, ok
}

// ratio formats a/b, or "—" when either is missing.
func ratio(a, b float64, okA, okB bool) string {
	if !okA || !okB || b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func markdown(cfg Config, s summary) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# relay benchmarks\n\n")
	w("Payload %d B; %d messages per throughput run; median of %d run(s); %s, GOMAXPROCS %d, %s/%s; %s.\n\n",
		cfg.Payload, cfg.N, cfg.Runs, runtime.Version(), runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH,
		time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	w("Versions: %s.\n\n", strings.Join(moduleVersions(), ", "))
	w("Faces: **relay-bytes** = `relay.Broker`; **relay-watermill** = relay's `message.Publisher`/`Subscriber`; ")
	w("**peer** = Watermill gochannel / watermill-redisstream / watermill-nats `pkg/jetstream`; ")
	w("**raw** = go-redis (pipelined XADD, XREADGROUP COUNT 500, multi-id XACK) / nats.go (Publish, PublishAsync, Consume + Ack); ")
	w("**raw-wire** = the same raw client doing the wire work relay's format requires per message and nothing else: on Redis ")
	w("the entry relay writes (`_watermill_message_uuid`, an empty `metadata`, `payload`), on NATS relay's two headers (a fresh ")
	w("UUID as `_watermill_message_uuid` and as `Nats-Msg-Id`, the stream's de-duplication that makes relay's retried publish ")
	w("safe), so relay ÷ raw is what relay costs with its format and guarantees, and relay ÷ raw-wire what its code costs.\n\n")

	w("## Throughput (messages/s, higher is better)\n\n")
	w("publish-1: one message per call from 1 goroutine; publish-16: from 16 goroutines; batch-100: 100 per call ")
	w("(Watermill's variadic Publish; raw: pipeline / PublishAsync); end-to-end: consumer group running, publish N from ")
	w("16 goroutines, until all are handled and the server holds none unacked; router: the same through a Watermill Router ")
	w("with one no-op handler. Ratios: relay ÷ peer, relay ÷ raw and relay ÷ raw-wire, above 1 means relay is faster.\n\n")
	for _, sys := range Systems {
		w("### %s\n\n| case | relay-bytes | relay-watermill | peer | raw | raw-wire | bytes÷peer | watermill÷peer | bytes÷raw | watermill÷raw | bytes÷raw-wire | watermill÷raw-wire |\n", sys)
		w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, cas := range ThroughputCases {
			row := []string{cas}
			rate := map[string]float64{}
			has := map[string]bool{}
			for _, f := range Faces {
				r, ok := s.get(sys, f, cas)
				rate[f], has[f] = r.Rate(), ok
				row = append(row, num(r.Rate(), ok))
			}
			row = append(row,
				ratio(rate[FaceBytes], rate[FacePeer], has[FaceBytes], has[FacePeer]),
				ratio(rate[FaceWatermill], rate[FacePeer], has[FaceWatermill], has[FacePeer]),
				ratio(rate[FaceBytes], rate[FaceRaw], has[FaceBytes], has[FaceRaw]),
				ratio(rate[FaceWatermill], rate[FaceRaw], has[FaceWatermill], has[FaceRaw]),
				ratio(rate[FaceBytes], rate[FaceRawWire], has[FaceBytes], has[FaceRawWire]),
				ratio(rate[FaceWatermill], rate[FaceRawWire], has[FaceWatermill], has[FaceRawWire]))
			w("| %s |\n", strings.Join(row, " | "))
		}
		w("\n")
	}

	w("%s", scalingMarkdown(cfg.Scale, s))

	w("## Telemetry cost: end to end on relay-bytes, OpenTelemetry off and on\n\n")
	w("Off: no SDK installed (the global no-op providers, the default). On: the SDK with a batch span processor, every ")
	w("span sampled (to an exporter that drops them) and metrics aggregated. Ratio: on ÷ off.\n\n")
	w("| system | off (msg/s) | on (msg/s) | on ÷ off | off allocs | on allocs | off B | on B |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, sys := range Systems {
		off, okOff := s.get(sys, FaceBytes, CaseEndToEnd)
		on, okOn := s.get(sys, FaceBytes, CaseTelemetry)
		if !okOn {
			continue
		}
		w("| %s | %s | %s | %s | %s | %s | %s | %s |\n", sys, num(off.Rate(), okOff), num(on.Rate(), okOn),
			ratio(on.Rate(), off.Rate(), okOn, okOff), dec(off.Allocs, okOff), dec(on.Allocs, okOn),
			bytesNum(off.AllocBytes, okOff), bytesNum(on.AllocBytes, okOn))
	}
	w("\n")

	w("## Latency, publish → handler (%d messages at %d/s; lower is better)\n\n", cfg.LatencyN, cfg.Rate)
	w("| system | face | p50 | p99 | p50 ÷ peer | p99 ÷ peer | p50 ÷ raw | p99 ÷ raw | p50 ÷ raw-wire | p99 ÷ raw-wire |\n")
	w("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, sys := range Systems {
		peer, okP := s.get(sys, FacePeer, CaseLatency)
		raw, okR := s.get(sys, FaceRaw, CaseLatency)
		wire, okW := s.get(sys, FaceRawWire, CaseLatency)
		for _, f := range Faces {
			r, ok := s.get(sys, f, CaseLatency)
			if !ok {
				continue
			}
			w("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", sys, f, dur(r.P50), dur(r.P99),
				ratio(float64(r.P50), float64(peer.P50), true, okP), ratio(float64(r.P99), float64(peer.P99), true, okP),
				ratio(float64(r.P50), float64(raw.P50), true, okR), ratio(float64(r.P99), float64(raw.P99), true, okR),
				ratio(float64(r.P50), float64(wire.P50), true, okW), ratio(float64(r.P99), float64(wire.P99), true, okW))
		}
	}

	w("\n## Delayed delivery: how late a message due at a time arrives (relay-bytes; lower is better)\n\n")
	w("PublishAt on an otherwise idle system; none may arrive early (the case fails if one does). Dense: %d messages due one every %v, the first %v ahead. ",
		min(cfg.LatencyN, denseDelays.n), denseDelays.step, denseDelays.lead)
	w("Sparse: %d due one every %v, the first %v ahead, so that each fires on its own. ",
		min(cfg.LatencyN, sparseDelays.n), sparseDelays.step, sparseDelays.lead)
	w("memory: a timer heap per topic; redis: a sorted set and a mover woken at the next due time; nats: JetStream ")
	w("message schedules (nats-server 2.12+), whose scheduler waits at least 250 ms between two runs (nats-server ")
	w("v2.15.2 server/scheduler.go), so dense due times fire together, up to 250 ms late.\n\n")
	w("| system | p50 | p99 | max | sparse p50 | sparse p99 | sparse max |\n|---|---:|---:|---:|---:|---:|---:|\n")
	for _, sys := range Systems {
		r, ok := s.get(sys, FaceBytes, CaseDelayed)
		sp, okS := s.get(sys, FaceBytes, CaseSparse)
		if !ok && !okS {
			continue
		}
		cell := func(ok bool, d time.Duration) string {
			if !ok {
				return "—"
			}
			return dur(d)
		}
		w("| %s | %s | %s | %s | %s | %s | %s |\n", sys, cell(ok, r.P50), cell(ok, r.P99), cell(ok, r.Max),
			cell(okS, sp.P50), cell(okS, sp.P99), cell(okS, sp.Max))
	}

	w("\n## Allocations per message (whole process during the run; lower is better)\n\n")
	w("The embedded NATS server runs in the same process, so its allocations count for every NATS face alike ")
	w("(set NATS_URL to an external server to leave them out).\n\n")
	w("| system | face | publish-1 allocs | publish-1 B | end-to-end allocs | end-to-end B | e2e allocs ÷ peer | e2e allocs ÷ raw | e2e allocs ÷ raw-wire |\n")
	w("|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, sys := range Systems {
		peer, okP := s.get(sys, FacePeer, CaseEndToEnd)
		raw, okR := s.get(sys, FaceRaw, CaseEndToEnd)
		wire, okW := s.get(sys, FaceRawWire, CaseEndToEnd)
		for _, f := range Faces {
			p1, ok1 := s.get(sys, f, CasePublish1)
			e, okE := s.get(sys, f, CaseEndToEnd)
			if !ok1 && !okE {
				continue
			}
			w("| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", sys, f,
				dec(p1.Allocs, ok1), bytesNum(p1.AllocBytes, ok1), dec(e.Allocs, okE), bytesNum(e.AllocBytes, okE),
				ratio(e.Allocs, peer.Allocs, okE, okP), ratio(e.Allocs, raw.Allocs, okE, okR), ratio(e.Allocs, wire.Allocs, okE, okW))
		}
	}

	w("\nEvery throughput case, allocations and bytes per message (whole process):\n\n")
	w("| system | face |")
	for _, c := range ThroughputCases {
		w(" %s allocs | %s B |", c, c)
	}
	w("\n|---|---|%s\n", strings.Repeat("---:|---:|", len(ThroughputCases)))
	for _, sys := range Systems {
		for _, f := range Faces {
			var row strings.Builder
			found := false
			for _, c := range ThroughputCases {
				r, ok := s.get(sys, f, c)
				found = found || ok
				fmt.Fprintf(&row, " %s | %s |", dec(r.Allocs, ok), bytesNum(r.AllocBytes, ok))
			}
			if found {
				w("| %s | %s |%s\n", sys, f, row.String())
			}
		}
	}

	w("\n## Peak RSS, memory backend (%d messages end to end, in a child process)\n\n", cfg.RSSN)
	w("| face | peak RSS | ÷ peer | throughput (msg/s) |\n|---|---:|---:|---:|\n")
	peer, okP := s.get("memory", FacePeer, CasePeakRSS)
	for _, f := range Faces {
		r, ok := s.get("memory", f, CasePeakRSS)
		if !ok {
			continue
		}
		w("| %s | %.1f MiB | %s | %s |\n", f, float64(r.PeakRSS)/(1<<20),
			ratio(float64(r.PeakRSS), float64(peer.PeakRSS), true, okP), num(r.Rate(), true))
	}
	w("\n![throughput](chart.png)\n")
	return b.String()
}

func num(v float64, ok bool) string {
	if !ok {
		return "—"
	}
	return fmt.Sprintf("%.0f", v)
}

func dec(v float64, ok bool) string {
	if !ok {
		return "—"
	}
	return fmt.Sprintf("%.1f", v)
}

func bytesNum(v float64, ok bool) string {
	if !ok {
		return "—"
	}
	return fmt.Sprintf("%.0f", v)
}

func dur(d time.Duration) string {
	return d.Round(time.Microsecond).String()
}

// moduleVersions lists the versions of the libraries compared, as built.
func moduleVersions() []string {
	want := []string{"github.com/ThreeDotsLabs/watermill", "github.com/ThreeDotsLabs/watermill-redisstream",
		"github.com/ThreeDotsLabs/watermill-nats/v2", "github.com/redis/go-redis/v9", "github.com/nats-io/nats.go",
		"github.com/nats-io/nats-server/v2"}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return []string{"unknown"}
	}
	var out []string
	for _, d := range info.Deps {
		if slices.Contains(want, d.Path) {
			out = append(out, strings.TrimPrefix(d.Path, "github.com/")+" "+d.Version)
		}
	}
	return out
}

// ReadResults reads the results.json that an earlier run (or [WriteReport])
// wrote at path. It returns the error of reading the file, or an error
// naming path when its content is not a JSON list of results.
func ReadResults(path string) ([]Result, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var results []Result
	if err := json.Unmarshal(data, &results); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return results, nil
}

func writeJSON(path string, results []Result) error {
	data, err := json.MarshalIndent(results, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}
