// Command relaybench measures relay's backends against the established
// Watermill adapters and the bare clients, and writes a Markdown table and a
// chart. Run it on a quiet machine:
//
//	cd benchmarks && go run ./cmd/relaybench -out ../benchmarks-results
//
// It starts its own servers (an embedded nats-server, a redis-server from
// PATH); NATS_URL and REDIS_URL point it at others. -smoke runs every case
// with a handful of messages.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"regexp"
	"runtime/pprof"
	"strconv"
	"strings"

	"github.com/go-relay/relay/benchmarks"
)

func main() {
	benchmarks.MaybeRunChild()
	exit := 0
	defer func() { os.Exit(exit) }()

	cfg := benchmarks.DefaultConfig()
	smoke := flag.Bool("smoke", false, "tiny run of every case (overrides -n, -runs, -latency-n, -rss-n, -scale-n, -scale-bytes)")
	flag.IntVar(&cfg.N, "n", cfg.N, "messages per throughput run")
	flag.IntVar(&cfg.Payload, "payload", cfg.Payload, "payload size in bytes (e.g. 16, 1024, 65536)")
	flag.IntVar(&cfg.Runs, "runs", cfg.Runs, "runs per case; the table shows medians")
	flag.IntVar(&cfg.LatencyN, "latency-n", cfg.LatencyN, "messages per latency run")
	flag.IntVar(&cfg.Rate, "rate", cfg.Rate, "messages per second of a latency run")
	flag.IntVar(&cfg.RSSN, "rss-n", cfg.RSSN, "messages of the memory backend's peak-RSS run")
	flag.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "bound of one run")
	flag.IntVar(&cfg.Scale.N, "scale-n", cfg.Scale.N, "messages per cell of the scaling case")
	flag.IntVar(&cfg.Scale.Bytes, "scale-bytes", cfg.Scale.Bytes, "payload bytes per scaling cell at most (cuts -scale-n for large payloads)")
	scalePubs := flag.String("scale-publishers", ints(cfg.Scale.Publishers), "publisher goroutines of the scaling case, comma-separated")
	scalePayloads := flag.String("scale-payloads", ints(cfg.Scale.Payloads), "payload sizes in bytes of the scaling case, comma-separated")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	cases := flag.String("cases", "", "regexp over system/face/case, e.g. 'redis/' or '/(end-to-end|latency)$'")
	flag.StringVar(&cfg.Out, "out", "", "directory for table.md, chart.png and results.json (none: print only)")
	from := flag.String("from", "", "write the report of an earlier run's results.json to -out instead of running (give the run's -n, -runs and sizes)")
	flag.Parse()

	var err error
	if cfg.Scale.Publishers, err = parseInts(*scalePubs); err != nil {
		fmt.Fprintln(os.Stderr, "relaybench: -scale-publishers:", err)
		os.Exit(2)
	}
	if cfg.Scale.Payloads, err = parseInts(*scalePayloads); err != nil {
		fmt.Fprintln(os.Stderr, "relaybench: -scale-payloads:", err)
		os.Exit(2)
	}
	if *smoke {
		s := benchmarks.SmokeConfig()
		cfg.N, cfg.Runs, cfg.LatencyN, cfg.Rate, cfg.RSSN, cfg.Timeout = s.N, s.Runs, s.LatencyN, s.Rate, s.RSSN, s.Timeout
		cfg.Scale.N, cfg.Scale.Bytes = s.Scale.N, s.Scale.Bytes
	}
	if *cases != "" {
		re, err := regexp.Compile(*cases)
		if err != nil {
			fmt.Fprintln(os.Stderr, "relaybench: -cases:", err)
			os.Exit(2)
		}
		cfg.Cases = re
	}
	cfg.Log = os.Stderr

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "relaybench: -cpuprofile:", err)
			os.Exit(2)
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}

	if *from != "" {
		results, err := benchmarks.ReadResults(*from)
		if err == nil && cfg.Out == "" {
			err = errors.New("-from needs -out")
		}
		if err == nil {
			err = benchmarks.WriteReport(cfg, results)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "relaybench:", err)
			exit = 1
			return
		}
		fmt.Fprintf(os.Stderr, "wrote %s/table.md, chart.png, results.json\n", cfg.Out)
		return
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	_, err = benchmarks.Run(ctx, cfg)
	if cfg.Out != "" {
		fmt.Fprintf(os.Stderr, "wrote %s/table.md, chart.png, results.json\n", cfg.Out)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "relaybench:", err)
		exit = 1
	}
}

// ints formats v as a comma-separated list.
func ints(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

// parseInts reads a comma-separated list of positive integers.
func parseInts(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}
