package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/go-relay/relay"
)

func tailCommand() *cli.Command {
	return &cli.Command{
		Name:      "tail",
		Usage:     "print a topic's messages as they arrive, taking none from any consumer group",
		ArgsUsage: "TOPIC",
		UsageText: `relay tail TOPIC [--json]

Follows TOPIC from now on until Ctrl-C without a consumer: on NATS it reads
the stream by sequence (direct get, woken by a plain subscription on the
topic's subject), which creates nothing on the server; on Redis XREAD, which
joins no group. One line per message: time, id, uuid,
metadata and payload (as text, or hex when binary).

Examples:
   relay --nats nats://127.0.0.1:4222 tail orders.placed
   relay --redis redis://127.0.0.1:6379/0 tail orders.placed.dead --json`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object per message, payload base64"},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if cmd.Args().Len() != 1 {
				return usagef("tail needs one TOPIC; got %d arguments", cmd.Args().Len())
			}
			topic := cmd.Args().First()
			if err := relay.ValidateTopic(topic); err != nil {
				return usagef("%v", err)
			}
			return withBackend(ctx, cmd, func(b *backend) error {
				t, ok := b.in.(relay.Tailer)
				if !ok {
					return fmt.Errorf("the backend at %s cannot tail", b.addr)
				}
				out := cmd.Root().Writer
				enc := json.NewEncoder(out)
				for m, err := range t.Tail(ctx, topic) {
					if err != nil {
						if errors.Is(err, relay.ErrUnknownTopic) {
							return fmt.Errorf("unknown topic %q on %s: %w", topic, b.addr, err)
						}
						return err
					}
					if cmd.Bool("json") {
						if err := enc.Encode(toMessageJSON(m)); err != nil {
							return err
						}
						continue
					}
					var md []string
					for _, k := range slices.Sorted(maps.Keys(m.Metadata)) {
						md = append(md, k+"="+m.Metadata[k])
					}
					payload := string(m.Payload)
					if !printable(m.Payload) {
						payload = fmt.Sprintf("%x", m.Payload)
					}
					fmt.Fprintf(out, "%s %s %s [%s] %s\n", m.Time.Format(time.RFC3339Nano), m.ID, orDash(m.UUID), strings.Join(md, " "), payload)
				}
				return nil // Ctrl-C ends a tail: not an error
			})
		},
	}
}

type messageJSON struct {
	Topic    string            `json:"topic"`
	ID       string            `json:"id"`
	Time     time.Time         `json:"time"`
	UUID     string            `json:"uuid,omitempty"`
	Payload  []byte            `json:"payload"`
	Metadata map[string]string `json:"metadata"`
}

func toMessageJSON(m relay.StoredMessage) messageJSON {
	return messageJSON{m.Topic, m.ID, m.Time, m.UUID, m.Payload, m.Metadata}
}
