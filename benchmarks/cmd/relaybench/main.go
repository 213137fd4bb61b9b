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
	"flag"
	"fmt"
	"os"
	"os/signal"
	"regexp"

	"github.com/go-relay/relay/benchmarks"
)

func main() {
	benchmarks.MaybeRunChild()

	cfg := benchmarks.DefaultConfig()
	smoke := flag.Bool("smoke", false, "tiny run of every case (overrides -n, -runs, -latency-n, -rss-n)")
	flag.IntVar(&cfg.N, "n", cfg.N, "messages per throughput run")
	flag.IntVar(&cfg.Payload, "payload", cfg.Payload, "payload size in bytes (e.g. 16, 1024, 65536)")
	flag.IntVar(&cfg.Runs, "runs", cfg.Runs, "runs per case; the table shows medians")
	flag.IntVar(&cfg.LatencyN, "latency-n", cfg.LatencyN, "messages per latency run")
	flag.IntVar(&cfg.Rate, "rate", cfg.Rate, "messages per second of a latency run")
	flag.IntVar(&cfg.RSSN, "rss-n", cfg.RSSN, "messages of the memory backend's peak-RSS run")
	flag.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "bound of one run")
	cases := flag.String("cases", "", "regexp over system/face/case, e.g. 'redis/' or '/(end-to-end|latency)$'")
	flag.StringVar(&cfg.Out, "out", "", "directory for table.md, chart.png and results.json (none: print only)")
	flag.Parse()

	if *smoke {
		s := benchmarks.SmokeConfig()
		cfg.N, cfg.Runs, cfg.LatencyN, cfg.Rate, cfg.RSSN, cfg.Timeout = s.N, s.Runs, s.LatencyN, s.Rate, s.RSSN, s.Timeout
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

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	_, err := benchmarks.Run(ctx, cfg)
	if cfg.Out != "" {
		fmt.Fprintf(os.Stderr, "wrote %s/table.md, chart.png, results.json\n", cfg.Out)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "relaybench:", err)
		os.Exit(1)
	}
}
