package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"time"
)

// Config is one benchmark program run.
type Config struct {
	Params
	Runs int // runs per case and implementation; the report shows medians
	// RSSN is the number of messages of the peak-rss case.
	RSSN int
	// Scale is the grid of the scaling case ([CaseScaling]).
	Scale ScaleConfig
	// Cases selects the "system/face/case" names to run; nil runs all.
	Cases *regexp.Regexp
	// Out is the directory that receives table.md, chart.png and
	// results.json; empty writes nothing.
	Out string
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// DefaultConfig is the full measurement: meant for a quiet machine.
func DefaultConfig() Config {
	return Config{
		Params: Params{N: 100_000, Payload: 1024, LatencyN: 2000, Rate: 1000, Timeout: 10 * time.Minute},
		Runs:   5,
		RSSN:   1_000_000,
		Scale: ScaleConfig{Publishers: DefaultScalePublishers, Payloads: DefaultScalePayloads,
			N: 20_000, Bytes: 128 << 20},
	}
}

// SmokeConfig is a tiny run of every case, to check that nothing rotted.
func SmokeConfig() Config {
	return Config{
		Params: Params{N: 300, Payload: 1024, LatencyN: 20, Rate: 2000, Timeout: 20 * time.Second},
		Runs:   1,
		RSSN:   2000,
		Scale: ScaleConfig{Publishers: DefaultScalePublishers, Payloads: DefaultScalePayloads,
			N: 64, Bytes: 1 << 20},
	}
}

// Run runs every selected case on every implementation, cfg.Runs times,
// interleaving implementations (see runOrder) so that drift of the machine
// spreads evenly, then writes the report to cfg.Out. It returns the results
// and the errors of the runs that failed (the report shows what succeeded).
func Run(ctx context.Context, cfg Config) ([]Result, error) {
	log := cfg.Log
	if log == nil {
		log = io.Discard
	}
	env := &Env{}
	defer env.Close()
	var results []Result
	var errs []error
	for _, cas := range AllCases {
		for _, p := range cellsOf(cfg, cas) {
			for run := 1; run <= cfg.Runs; run++ {
				for _, impl := range runOrder(Impls(), run) {
					if cfg.Cases != nil && !cfg.Cases.MatchString(impl.Name()+"/"+cas) {
						continue
					}
					if ctx.Err() != nil {
						return results, errors.Join(append(errs, ctx.Err())...)
					}
					label := cas
					if cas == CaseScaling {
						label = ScalingCell(p.Publishers, p.Payload)
					}
					// What earlier runs left to collect is not this run's.
					runtime.GC()
					res, err := RunCase(ctx, env, impl, cas, p)
					switch {
					case errors.Is(err, ErrNotApplicable):
						continue
					case err != nil:
						fmt.Fprintf(log, "%-24s %-11s run %d: FAILED: %v\n", impl.Name(), label, run, err)
						errs = append(errs, err)
						continue
					}
					fmt.Fprintf(log, "%-24s %-11s run %d: %s\n", impl.Name(), label, run, describe(res))
					results = append(results, res)
				}
			}
		}
	}
	if cfg.Out != "" {
		if err := WriteReport(cfg, results); err != nil {
			errs = append(errs, err)
		}
	}
	return results, errors.Join(errs...)
}

// runOrder returns impls in the order of run number run (from 1): the
// systems in table order, the faces of each turned by run-1, so that across
// runs each face of a system runs first, and after each other face, about as
// often. With a fixed order the first face of each system always followed
// the other system's runs and paid for what they left behind.
func runOrder(impls []Impl, run int) []Impl {
	out := make([]Impl, 0, len(impls))
	for start := 0; start < len(impls); {
		end := start + 1
		for end < len(impls) && impls[end].System == impls[start].System {
			end++
		}
		faces := impls[start:end]
		for k := range faces {
			out = append(out, faces[(k+run-1)%len(faces)])
		}
		start = end
	}
	return out
}

// cellsOf returns the parameters of each run of cas: one, but for the
// scaling case one per cell of its grid.
func cellsOf(cfg Config, cas string) []Params {
	p := cfg.Params
	switch cas {
	case CasePeakRSS:
		p.N = cfg.RSSN
	case CaseScaling:
		var cells []Params
		for _, size := range cfg.Scale.Payloads {
			for _, pubs := range cfg.Scale.Publishers {
				c := cfg.Params
				c.Payload, c.Publishers, c.N = size, pubs, cfg.Scale.cellN(size, pubs)
				cells = append(cells, c)
			}
		}
		return cells
	}
	return []Params{p}
}

func describe(r Result) string {
	switch r.Case {
	case CaseLatency:
		return fmt.Sprintf("p50 %v p99 %v", r.P50, r.P99)
	case CaseDelayed, CaseSparse:
		return fmt.Sprintf("late by p50 %v p99 %v max %v", r.P50, r.P99, r.Max)
	case CasePeakRSS:
		return fmt.Sprintf("peak RSS %.1f MiB, %.0f msg/s", float64(r.PeakRSS)/(1<<20), r.Rate())
	}
	return fmt.Sprintf("%.0f msg/s, %.1f allocs/msg, %.0f B/msg", r.Rate(), r.Allocs, r.AllocBytes)
}

// WriteReport writes table.md, chart.png, scaling.png and results.json of
// results to the directory cfg.Out, creating it and replacing those files;
// cfg's sizes (N, Runs, Payload, Scale, RSSN) are what the report's text
// states, not checked against results. It returns the first error of creating
// the directory or writing a file.
func WriteReport(cfg Config, results []Result) error {
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return err
	}
	s := summarize(results)
	if err := os.WriteFile(filepath.Join(cfg.Out, "table.md"), []byte(markdown(cfg, s)), 0o644); err != nil {
		return err
	}
	if err := writeJSON(filepath.Join(cfg.Out, "results.json"), results); err != nil {
		return err
	}
	if err := writeScalingChart(filepath.Join(cfg.Out, "scaling.png"), cfg.Scale, s); err != nil {
		return err
	}
	return writeChart(filepath.Join(cfg.Out, "chart.png"), s)
}
