package main

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v3"
)

func consumerCommand() *cli.Command {
	return &cli.Command{
		Name:  "consumer",
		Usage: "manage the consumers of a topic's consumer groups",
		Commands: []*cli.Command{{
			Name:      "delete",
			Usage:     "delete a consumer of a group that has nothing pending",
			ArgsUsage: "TOPIC GROUP CONSUMER",
			UsageText: `relay consumer delete TOPIC GROUP CONSUMER

Removes CONSUMER from the consumer group GROUP of TOPIC, only when it has no
pending messages (delivered, not acknowledged): one with pending messages is
refused, exit status 1, and nothing is removed. On Redis a consumer is one
member of the group (XGROUP DELCONSUMER): a consumer left by a process that is
gone. On NATS a group is one durable consumer, named in relay stats' CONSUMERS
column: deleting it deletes the group and its position in the stream.

Examples:
   relay --redis redis://127.0.0.1:6379/0 consumer delete orders.placed billing host-7-1234
   relay --nats nats://127.0.0.1:4222 consumer delete orders.placed billing billing`,
			Action: func(ctx context.Context, cmd *cli.Command) error {
				args := cmd.Args().Slice()
				if len(args) != 3 {
					return usagef("consumer delete takes TOPIC GROUP CONSUMER, not %d argument(s)", len(args))
				}
				return withBackend(ctx, cmd, func(b *backend) error {
					cctx, cancel := b.call(ctx)
					defer cancel()
					if err := b.in.DeleteConsumer(cctx, args[0], args[1], args[2]); err != nil {
						return fmt.Errorf("on %s: %w", b.addr, err)
					}
					fmt.Fprintf(cmd.Root().Writer, "deleted consumer %s of group %s of %s\n", args[2], args[1], args[0])
					return nil
				})
			},
		}},
	}
}
