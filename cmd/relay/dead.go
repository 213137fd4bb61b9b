package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/urfave/cli/v3"

	"github.com/go-relay/relay"
)

// selectFlags choose dead letters; every dead command but show takes them.
func selectFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "dead-letter-topic", Usage: "read `TOPIC` instead of the default dead-letter topic (TOPIC.dead), for a backend configured with WithDeadLetterTopic"},
		&cli.StringFlag{Name: "reason", Usage: "only dead letters whose reason matches the regular expression `RE` (Go syntax)"},
		&cli.DurationFlag{Name: "older-than", Usage: "only dead letters stored at least `D` ago (e.g. 1h)"},
		&cli.StringFlag{Name: "source-topic", Usage: "only dead letters whose source topic is `TOPIC` (for a dead-letter topic that several topics share, see --dead-letter-topic)"},
		&cli.StringSliceFlag{Name: "id", Usage: "only the dead letter of this `ID` (repeat for more)"},
		&cli.BoolFlag{Name: "newest", Usage: "newest first (default oldest first)"},
		&cli.IntFlag{Name: "limit", Usage: "at most `N` dead letters"},
	}
}

// selection is what the select flags chose, on which dead-letter topic.
type selection struct {
	source, deadLetterTopic string
	filter                  relay.DeadLetterFilter
	filtered                bool // some flag narrows the selection
}

func readSelection(cmd *cli.Command) (selection, error) {
	if cmd.Args().Len() != 1 {
		return selection{}, usagef("%s needs one TOPIC, the source topic whose dead letters to read; got %d arguments", cmd.FullName(), cmd.Args().Len())
	}
	s := selection{source: cmd.Args().First()}
	s.deadLetterTopic = relay.DefaultDeadLetterTopic(s.source)
	if t := cmd.String("dead-letter-topic"); t != "" {
		s.deadLetterTopic = t
	}
	f := &s.filter
	if re := cmd.String("reason"); re != "" {
		var err error
		if f.Reason, err = regexp.Compile(re); err != nil {
			return selection{}, usagef("--reason: %v", err)
		}
	}
	f.OlderThan = cmd.Duration("older-than")
	f.SourceTopic = cmd.String("source-topic")
	f.IDs = cmd.StringSlice("id")
	f.Newest = cmd.Bool("newest")
	f.Limit = cmd.Int("limit")
	if f.OlderThan < 0 || f.Limit < 0 {
		return selection{}, usagef("--older-than and --limit must not be negative")
	}
	s.filtered = f.Reason != nil || f.OlderThan > 0 || f.SourceTopic != "" || len(f.IDs) > 0 || f.Limit > 0
	return s, nil
}

func deadCommand() *cli.Command {
	return &cli.Command{
		Name:  "dead",
		Usage: "list, show, redrive or purge the dead letters of a topic",
		UsageText: `relay dead ls|show|redrive|purge TOPIC [options]

TOPIC is the source topic: its dead letters are on TOPIC.dead (or --dead-letter-topic).`,
		Commands: []*cli.Command{deadLs(), deadShow(), deadRedrive(), deadPurge()},
	}
}

func deadLs() *cli.Command {
	return &cli.Command{
		Name:      "ls",
		Usage:     "list dead letters: id, time, attempts, source and reason",
		ArgsUsage: "TOPIC",
		UsageText: `relay dead ls TOPIC [--reason RE] [--older-than D] [--id ID]... [--newest] [--limit N] [--json]

Examples:
   relay --redis redis://127.0.0.1:6379/0 dead ls orders.placed
   relay --nats nats://127.0.0.1:4222 dead ls orders.placed --reason 'timeout|refused' --newest --limit 20`,
		Flags: append(selectFlags(), &cli.BoolFlag{Name: "json", Usage: "print JSON instead of a table: an array of dead letters, payloads base64"}),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			sel, err := readSelection(cmd)
			if err != nil {
				return err
			}
			return withBackend(ctx, cmd, func(b *backend) error {
				out := cmd.Root().Writer
				var tw *tabwriter.Writer
				var list []deadLetterJSON
				if !cmd.Bool("json") {
					tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
					fmt.Fprintln(tw, "ID\tSTORED\tAGE\tATTEMPTS\tSOURCE\tBYTES\tREASON")
				}
				now := time.Now()
				for dl, err := range b.in.DeadLetters(ctx, sel.deadLetterTopic, sel.filter) {
					if err != nil {
						return deadLetterError(b, sel, err)
					}
					if tw == nil {
						list = append(list, toDeadLetterJSON(dl))
						continue
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%s\n", dl.ID, dl.Time.Format(time.RFC3339), age(now.Sub(dl.Time)),
						dl.Attempts, orDash(dl.SourceTopic), len(dl.Payload), orDash(cut(oneLine(dl.Reason), 80)))
				}
				if tw != nil {
					return tw.Flush()
				}
				if list == nil {
					list = []deadLetterJSON{}
				}
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(list)
			})
		},
	}
}

func deadShow() *cli.Command {
	return &cli.Command{
		Name:      "show",
		Usage:     "print one dead letter whole: reason, metadata and payload",
		ArgsUsage: "TOPIC ID",
		UsageText: `relay dead show TOPIC ID [--raw]

Examples:
   relay --nats nats://127.0.0.1:4222 dead show orders.placed 42
   relay --redis redis://127.0.0.1:6379/0 dead show orders.placed 1764770000000-0 --raw > payload.bin`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dead-letter-topic", Usage: "read `TOPIC` instead of TOPIC.dead"},
			&cli.BoolFlag{Name: "raw", Usage: "write only the payload's bytes"},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if cmd.Args().Len() != 2 {
				return usagef("dead show needs TOPIC and ID; got %d arguments", cmd.Args().Len())
			}
			sel := selection{source: cmd.Args().Get(0)}
			sel.deadLetterTopic = relay.DefaultDeadLetterTopic(sel.source)
			if t := cmd.String("dead-letter-topic"); t != "" {
				sel.deadLetterTopic = t
			}
			id := cmd.Args().Get(1)
			sel.filter.IDs = []string{id}
			return withBackend(ctx, cmd, func(b *backend) error {
				for dl, err := range b.in.DeadLetters(ctx, sel.deadLetterTopic, sel.filter) {
					if err != nil {
						return deadLetterError(b, sel, err)
					}
					out := cmd.Root().Writer
					if cmd.Bool("raw") {
						_, err := out.Write(dl.Payload)
						return err
					}
					printDeadLetter(out, dl)
					return nil
				}
				return fmt.Errorf("no dead letter %s on %s", id, sel.deadLetterTopic)
			})
		},
	}
}

func printDeadLetter(w io.Writer, dl relay.DeadLetter) {
	fmt.Fprintf(w, "id:        %s\n", dl.ID)
	fmt.Fprintf(w, "topic:     %s\n", dl.Topic)
	fmt.Fprintf(w, "stored:    %s (%s ago)\n", dl.Time.Format(time.RFC3339Nano), age(time.Since(dl.Time)))
	fmt.Fprintf(w, "uuid:      %s\n", orDash(dl.UUID))
	fmt.Fprintf(w, "source:    %s %s\n", orDash(dl.SourceTopic), dl.SourceID)
	fmt.Fprintf(w, "attempts:  %d\n", dl.Attempts)
	if dl.Reason == "" {
		fmt.Fprintln(w, "reason:    - (no relay reason: not written by relay's dead-letter path)")
	} else {
		fmt.Fprintf(w, "reason:    %s\n", dl.Reason)
	}
	fmt.Fprintln(w, "metadata:")
	for _, k := range slices.Sorted(maps.Keys(dl.Metadata)) {
		fmt.Fprintf(w, "  %s: %s\n", k, dl.Metadata[k])
	}
	fmt.Fprintf(w, "payload:   %d bytes\n", len(dl.Payload))
	if printable(dl.Payload) {
		fmt.Fprintln(w, string(dl.Payload))
	} else {
		fmt.Fprintf(w, "%x\n(binary: shown in hex; --raw writes the bytes)\n", dl.Payload)
	}
}

func deadRedrive() *cli.Command {
	return &cli.Command{
		Name:      "redrive",
		Usage:     "publish dead letters again, as new messages, and remove each once its copy is stored",
		ArgsUsage: "TOPIC",
		UsageText: `relay dead redrive TOPIC (--all | --reason RE | --older-than D | --id ID... | --limit N) [--to TOPIC] [--dry-run]

Each chosen dead letter is published as a new message (a new UUID, its payload and
metadata without relay's dead-letter keys, plus relay_redriven_from = TOPIC.dead/ID)
on its source topic, or on --to, and removed only once that publish is stored: a crash
in between leaves both (the message may come twice, never lost). Run it again after a
crash or Ctrl-C to go on. A dead letter with no source topic (not written by relay)
is skipped unless --to names one. Prints a progress bar on a terminal and a closing
summary; exits 1 if any failed.

Examples:
   relay --nats nats://127.0.0.1:4222 dead redrive orders.placed --all --dry-run
   relay --redis redis://127.0.0.1:6379/0 dead redrive orders.placed --reason 'connection refused'
   relay --nats nats://127.0.0.1:4222 dead redrive orders.placed --id 17 --to orders.retry`,
		Flags: append(selectFlags(),
			&cli.BoolFlag{Name: "all", Usage: "every dead letter of the topic (needed when no other flag chooses)"},
			&cli.FloatFlag{Name: "rate", Usage: "at most `N` dead letters a second, so consumers are not flooded (0: as fast as the server takes them)"},
			&cli.StringFlag{Name: "to", Usage: "publish on `TOPIC` instead of each dead letter's source topic"},
			&cli.BoolFlag{Name: "dry-run", Usage: "print what would move, and move nothing"},
		),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			sel, err := readBulkSelection(cmd)
			if err != nil {
				return err
			}
			to := cmd.String("to")
			if to != "" {
				if err := relay.ValidateTopic(to); err != nil {
					return usagef("--to: %v", err)
				}
				if to == sel.deadLetterTopic {
					return usagef("--to %s is the dead-letter topic being read", to)
				}
			}
			return withBackend(ctx, cmd, func(b *backend) error {
				return bulk(ctx, cmd, b, sel, "redrive", "moved", func(cctx context.Context, dl relay.DeadLetter) (bool, error) {
					if to == "" && dl.SourceTopic == "" {
						return false, nil
					}
					return true, b.in.Redrive(cctx, dl, to)
				})
			})
		},
	}
}

func deadPurge() *cli.Command {
	return &cli.Command{
		Name:      "purge",
		Usage:     "remove dead letters for good",
		ArgsUsage: "TOPIC",
		UsageText: `relay dead purge TOPIC (--all | --reason RE | --older-than D | --id ID... | --limit N) [--dry-run]

Examples:
   relay --nats nats://127.0.0.1:4222 dead purge orders.placed --older-than 720h --dry-run
   relay --redis redis://127.0.0.1:6379/0 dead purge orders.placed --id 1764770000000-0`,
		Flags: append(selectFlags(),
			&cli.BoolFlag{Name: "all", Usage: "every dead letter of the topic (needed when no other flag chooses)"},
			&cli.FloatFlag{Name: "rate", Usage: "at most `N` dead letters a second (0: as fast as the server takes them)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "print what would be removed, and remove nothing"},
		),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			sel, err := readBulkSelection(cmd)
			if err != nil {
				return err
			}
			return withBackend(ctx, cmd, func(b *backend) error {
				return bulk(ctx, cmd, b, sel, "purge", "purged", func(cctx context.Context, dl relay.DeadLetter) (bool, error) {
					return true, b.in.Purge(cctx, dl)
				})
			})
		},
	}
}

// readBulkSelection is readSelection for redrive and purge, which act on
// every dead letter only with --all.
func readBulkSelection(cmd *cli.Command) (selection, error) {
	sel, err := readSelection(cmd)
	if err != nil {
		return selection{}, err
	}
	if sel.filtered && cmd.Bool("all") {
		return selection{}, usagef("--all chooses every dead letter: drop it, or drop the other choosing flags")
	}
	if !sel.filtered && !cmd.Bool("all") {
		return selection{}, usagef("choose the dead letters to %s: --all, or --reason, --older-than, --id or --limit", cmd.Name)
	}
	return sel, nil
}

// bulk applies act to every dead letter of sel, one at a time, with a
// progress bar, and prints a closing summary: done (act returned true and
// nil), skipped (false) and failed. It returns an error when any failed,
// and errInterrupted when ctx ended (Ctrl-C) before the end: the dead
// letter in hand is finished first, under a context of its own.
func bulk(ctx context.Context, cmd *cli.Command, b *backend, sel selection, verb, doneWord string,
	act func(context.Context, relay.DeadLetter) (bool, error)) error {
	out, errOut := cmd.Root().Writer, cmd.Root().ErrWriter
	if cmd.Bool("dry-run") {
		n := 0
		for dl, err := range b.in.DeadLetters(ctx, sel.deadLetterTopic, sel.filter) {
			if err != nil {
				return deadLetterError(b, sel, err)
			}
			n++
			dest := dl.SourceTopic
			if t := cmd.String("to"); t != "" {
				dest = t
			}
			if verb == "redrive" {
				fmt.Fprintf(out, "would redrive %s (%s) to %s\n", dl.ID, cut(oneLine(dl.Reason), 60), orDash(dest))
			} else {
				fmt.Fprintf(out, "would purge %s (%s)\n", dl.ID, cut(oneLine(dl.Reason), 60))
			}
		}
		fmt.Fprintf(out, "dry run: %d dead letters would be %s; nothing changed\n", n, map[string]string{"redrive": "redriven", "purge": "purged"}[verb])
		return nil
	}

	// Count first, for the progress bar; the second pass streams.
	total := 0
	for _, err := range b.in.DeadLetters(ctx, sel.deadLetterTopic, sel.filter) {
		if err != nil {
			return deadLetterError(b, sel, err)
		}
		total++
	}
	var every time.Duration
	if r := cmd.Float("rate"); r < 0 {
		return usagef("--rate must not be negative")
	} else if r > 0 {
		every = time.Duration(float64(time.Second) / r)
	}
	next := time.Now()
	bar := newProgress(errOut, verb, total)
	var done, skipped, failed int
	var interrupted bool
	for dl, err := range b.in.DeadLetters(ctx, sel.deadLetterTopic, sel.filter) {
		if err != nil {
			if ctx.Err() != nil {
				interrupted = true
				break
			}
			bar.finish()
			return deadLetterError(b, sel, err)
		}
		if every > 0 {
			if wait := time.Until(next); wait > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(wait):
				}
				if ctx.Err() != nil {
					interrupted = true
					break
				}
			}
			next = next.Add(every)
		}
		// The dead letter in hand is finished whatever Ctrl-C does.
		cctx, cancel := b.call(context.WithoutCancel(ctx))
		ok, err := act(cctx, dl)
		cancel()
		switch {
		case err != nil:
			failed++
			bar.note(fmt.Sprintf("%s %s: %v", verb, dl.ID, err))
		case !ok:
			skipped++
			bar.note(fmt.Sprintf("skipped %s: no source topic (not written by relay); give --to", dl.ID))
		default:
			done++
		}
		bar.set(done + skipped + failed)
		if ctx.Err() != nil {
			interrupted = true
			break
		}
	}
	bar.finish()
	fmt.Fprintf(out, "%s %d, skipped %d, failed %d (of %d chosen)\n", doneWord, done, skipped, failed, total)
	switch {
	case interrupted:
		fmt.Fprintf(errOut, "stopped by Ctrl-C after %d of %d: nothing is lost; run the same command again to go on\n", done+skipped+failed, total)
		return errInterrupted
	case failed > 0:
		return fmt.Errorf("%d dead letters not %s", failed, doneWord)
	}
	return nil
}

// deadLetterError says which topic an error of DeadLetters is about.
func deadLetterError(b *backend, sel selection, err error) error {
	if errors.Is(err, relay.ErrUnknownTopic) {
		return fmt.Errorf("unknown topic: no dead-letter topic %q on %s (the dead letters of %q): %w", sel.deadLetterTopic, b.addr, sel.source, err)
	}
	return fmt.Errorf("read %s on %s: %w", sel.deadLetterTopic, b.addr, err)
}

// The JSON of dead ls.
type deadLetterJSON struct {
	Topic       string            `json:"topic"`
	ID          string            `json:"id"`
	Time        time.Time         `json:"time"`
	SourceTopic string            `json:"source_topic,omitempty"`
	SourceID    string            `json:"source_id,omitempty"`
	Attempts    int               `json:"attempts"`
	Reason      string            `json:"reason"`
	UUID        string            `json:"uuid,omitempty"`
	Payload     []byte            `json:"payload"`
	Metadata    map[string]string `json:"metadata"`
}

func toDeadLetterJSON(dl relay.DeadLetter) deadLetterJSON {
	return deadLetterJSON{dl.Topic, dl.ID, dl.Time, dl.SourceTopic, dl.SourceID, dl.Attempts, dl.Reason, dl.UUID, dl.Payload, dl.Metadata}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func cut(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// printable reports whether p reads as text.
func printable(p []byte) bool {
	if !utf8.Valid(p) {
		return false
	}
	for _, r := range string(p) {
		if !unicode.IsPrint(r) && !unicode.IsSpace(r) {
			return false
		}
	}
	return true
}
