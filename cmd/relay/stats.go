package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/go-relay/relay"
)

func statsCommand() *cli.Command {
	return &cli.Command{
		Name:      "stats",
		Usage:     "print each topic's messages and dead letters, and each consumer group's pending messages and lag",
		ArgsUsage: "[TOPIC...]",
		UsageText: `relay stats [TOPIC...] [--json] [--watch D]

With no TOPIC, every topic relay manages on the server, dead-letter topics included.
Columns: MESSAGES stored in the topic; DEAD in its dead-letter topic (TOPIC.dead);
per GROUP: CONSUMERS, PENDING (delivered, not acknowledged), LAG (stored, not yet
delivered to the group; "?" when the server cannot tell), OLDEST (age of the
oldest pending message) and REDELIVERED (pending messages delivered more than once).

Examples:
   relay --nats nats://127.0.0.1:4222 stats
   relay --redis redis://127.0.0.1:6379/0 stats orders.placed orders.accepted --json
   relay --nats nats://127.0.0.1:4222 stats --watch 2s`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print JSON instead of a table: an array of topics"},
			&cli.DurationFlag{Name: "watch", Usage: "refresh every `D` (e.g. 2s) until Ctrl-C"},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			watch := cmd.Duration("watch")
			if watch < 0 || (cmd.IsSet("watch") && watch < 100*time.Millisecond) {
				return usagef("--watch must be at least 100ms, not %v", watch)
			}
			return withBackend(ctx, cmd, func(b *backend) error {
				out := cmd.Root().Writer
				for {
					infos, err := readStats(ctx, b, cmd.Args().Slice())
					if watch > 0 {
						fmt.Fprint(out, "\x1b[H\x1b[2J") // home, clear screen
						fmt.Fprintf(out, "%s  every %v  (Ctrl-C to stop)\n\n", time.Now().Format(time.TimeOnly), watch)
					}
					if werr := writeStats(out, infos, cmd.Bool("json")); werr != nil {
						return werr
					}
					if watch == 0 || ctx.Err() != nil {
						return err
					}
					if err != nil {
						fmt.Fprintln(cmd.Root().ErrWriter, "relay:", err)
					}
					select {
					case <-ctx.Done():
						return nil // Ctrl-C ends a watch: not an error
					case <-time.After(watch):
					}
				}
			})
		},
	}
}

// readStats reads the topics named, or every topic when none is. It reads
// every topic it can and returns the errors of the others, joined.
func readStats(ctx context.Context, b *backend, topics []string) ([]relay.TopicInfo, error) {
	if len(topics) == 0 {
		cctx, cancel := b.call(ctx)
		var err error
		topics, err = b.in.Topics(cctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("list topics on %s: %w", b.addr, err)
		}
	}
	var infos []relay.TopicInfo
	var errs []error
	for _, t := range topics {
		cctx, cancel := b.call(ctx)
		info, err := b.in.Topic(cctx, t)
		cancel()
		if err != nil {
			if errors.Is(err, relay.ErrUnknownTopic) {
				err = fmt.Errorf("unknown topic %q on %s: %w", t, b.addr, err)
			}
			errs = append(errs, err)
			continue
		}
		infos = append(infos, info)
	}
	return infos, errors.Join(errs...)
}

// The JSON of stats: snake_case keys, durations in seconds.
type (
	topicJSON struct {
		Topic       string      `json:"topic"`
		Store       string      `json:"store"`
		Messages    uint64      `json:"messages"`
		FirstID     string      `json:"first_id,omitempty"`
		LastID      string      `json:"last_id,omitempty"`
		FirstTime   *time.Time  `json:"first_time,omitempty"`
		LastTime    *time.Time  `json:"last_time,omitempty"`
		DeadLetters uint64      `json:"dead_letters"`
		Groups      []groupJSON `json:"groups"`
	}
	groupJSON struct {
		Group                string         `json:"group"`
		Pending              uint64         `json:"pending"`
		Lag                  *uint64        `json:"lag"` // null when the server cannot tell
		OldestPendingSeconds float64        `json:"oldest_pending_seconds"`
		Redeliveries         uint64         `json:"redeliveries"`
		Consumers            []consumerJSON `json:"consumers"`
	}
	consumerJSON struct {
		Name        string  `json:"name"`
		Pending     uint64  `json:"pending"`
		IdleSeconds float64 `json:"idle_seconds"`
	}
)

func toJSON(info relay.TopicInfo) topicJSON {
	tj := topicJSON{
		Topic: info.Topic, Store: info.Store, Messages: info.Messages,
		FirstID: info.FirstID, LastID: info.LastID, DeadLetters: info.DeadLetters,
		Groups: []groupJSON{},
	}
	if !info.FirstTime.IsZero() {
		tj.FirstTime, tj.LastTime = &info.FirstTime, &info.LastTime
	}
	for _, g := range info.Groups {
		gj := groupJSON{
			Group: g.Group, Pending: g.Pending, OldestPendingSeconds: g.OldestPending.Seconds(),
			Redeliveries: g.Redeliveries, Consumers: []consumerJSON{},
		}
		if g.LagKnown {
			lag := g.Lag
			gj.Lag = &lag
		}
		for _, c := range g.Consumers {
			gj.Consumers = append(gj.Consumers, consumerJSON{Name: c.Name, Pending: c.Pending, IdleSeconds: c.Idle.Seconds()})
		}
		tj.Groups = append(tj.Groups, gj)
	}
	return tj
}

func writeStats(w io.Writer, infos []relay.TopicInfo, asJSON bool) error {
	if asJSON {
		out := make([]topicJSON, 0, len(infos))
		for _, info := range infos {
			out = append(out, toJSON(info))
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tMESSAGES\tDEAD\tGROUP\tCONSUMERS\tPENDING\tLAG\tOLDEST\tREDELIVERED")
	for _, info := range infos {
		if len(info.Groups) == 0 {
			fmt.Fprintf(tw, "%s\t%d\t%d\t-\t\t\t\t\t\n", info.Topic, info.Messages, info.DeadLetters)
			continue
		}
		for _, g := range info.Groups {
			lag := "?"
			if g.LagKnown {
				lag = strconv.FormatUint(g.Lag, 10)
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d\t%d\t%s\t%s\t%d\n", info.Topic, info.Messages, info.DeadLetters,
				g.Group, len(g.Consumers), g.Pending, lag, age(g.OldestPending), g.Redeliveries)
		}
	}
	return tw.Flush()
}

// age prints d for a table: "-" for none, else rounded to what reads well.
func age(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	}
	return d.Round(time.Minute).String()
}
