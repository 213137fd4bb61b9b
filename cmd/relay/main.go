// Command relay is the operator's terminal for relay's server backends, NATS
// JetStream and Redis Streams: how far behind each consumer group is, what
// the dead-letter topics hold and why, sending dead letters back (redrive)
// or removing them (purge), and following a topic as messages arrive.
//
// Install it with
//
//	go install github.com/go-relay/relay/cmd/relay@latest
//
// and point it at a server with --nats URL or --redis URL (or the NATS_URL /
// REDIS_URL environment variables):
//
//	relay --nats nats://127.0.0.1:4222 stats
//	relay --redis redis://127.0.0.1:6379/0 dead ls orders.placed --reason 'timeout'
//	relay --redis redis://127.0.0.1:6379/0 dead redrive orders.placed --all --dry-run
//	relay --nats nats://127.0.0.1:4222 tail orders.placed
//
// Everything it reads comes from the backend's [relay.Inspector]; it never
// takes a message from a consumer group. Exit status: 0 on success; 1 when
// an operation failed (a server that cannot be reached within --timeout, an
// unknown topic, a dead letter that could not be moved or removed); 2 for a
// usage error (an unknown flag, a missing argument, an invalid --reason
// expression or --to topic), with nothing done; 130 when Ctrl-C stopped a
// bulk redrive or purge, after the message in hand, having reported how far
// it got.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v3"
)

// Exit statuses; see the package doc.
const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitInterrupted = 130
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// usageError is an error in how the command was called: nothing was done.
type usageError struct{ err error }

// Error returns the message of the underlying error.
func (e usageError) Error() string { return e.err.Error() }

// Unwrap returns the underlying error, for errors.Is and errors.As.
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// errInterrupted ends a bulk operation that Ctrl-C stopped; what it did is
// already reported.
var errInterrupted = errors.New("interrupted")

// run runs the command line args, writing to stdout and stderr, and returns
// the exit status. ctx is done on Ctrl-C.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	err := app.Run(ctx, args)
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errInterrupted):
		fmt.Fprintln(stderr, "relay: interrupted")
		return exitInterrupted
	}
	fmt.Fprintln(stderr, "relay:", err)
	var u usageError
	if errors.As(err, &u) {
		return exitUsage
	}
	return exitFailed
}

func newApp(stdout, stderr io.Writer) *cli.Command {
	app := &cli.Command{
		Name:  "relay",
		Usage: "inspect relay's topics and consumer groups, and redrive or purge dead letters",
		UsageText: `relay --nats URL | --redis URL COMMAND [options]

Examples:
   relay --nats nats://127.0.0.1:4222 stats
   REDIS_URL=redis://127.0.0.1:6379/0 relay stats orders.placed --json
   relay --redis redis://127.0.0.1:6379/0 dead ls orders.placed
   relay --nats nats://127.0.0.1:4222 dead redrive orders.placed --reason 'timeout' --dry-run
   relay --nats nats://127.0.0.1:4222 tail orders.placed`,
		Description: `Exit status: 0 success; 1 an operation failed (server unreachable, unknown topic,
a dead letter not moved); 2 usage error, nothing done; 130 Ctrl-C stopped a bulk
operation after the message in hand.`,
		Writer:    stdout,
		ErrWriter: stderr,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "nats", Usage: "NATS server `URL` (JetStream)", Sources: cli.EnvVars("NATS_URL")},
			&cli.StringFlag{Name: "redis", Usage: "Redis `URL`, as redis.ParseURL reads it (redis://host:port/db)", Sources: cli.EnvVars("REDIS_URL")},
			&cli.StringFlag{Name: "redis-cluster", Usage: "a Redis Cluster: `URL` of its nodes, as redis.ParseClusterURL reads it (redis://host1:port1?addr=host2:port2&addr=host3:port3)"},
			&cli.StringFlag{Name: "redis-sentinel", Usage: "a Redis behind Sentinel: `URL` of the sentinels with the master's name, as redis.ParseFailoverURL reads it (redis://sentinel1:26379?addr=sentinel2:26379&master_name=mymaster)"},
			&cli.DurationFlag{Name: "timeout", Value: 5 * time.Second, Usage: "how long to wait for the server to answer when connecting, and for each call"},
			&cli.IntFlag{Name: "replica-acks", Usage: "with --redis: a redrive removes a dead letter only once `N` replicas have its copy (WAIT, up to half of --timeout; see redisstreams.WithReplicaAcks); a copy not replicated fails and its dead letter stays"},
		},
		Commands: []*cli.Command{statsCommand(), deadCommand(), tailCommand(), consumerCommand()},
		// The exit status is run's to choose: never os.Exit from inside.
		ExitErrHandler: func(context.Context, *cli.Command, error) {},
	}
	setUsageErrors(app)
	return app
}

// setUsageErrors makes every flag error of cmd and its sub-commands a
// usageError.
func setUsageErrors(cmd *cli.Command) {
	cmd.OnUsageError = func(_ context.Context, _ *cli.Command, err error, _ bool) error {
		return usageError{err}
	}
	for _, c := range cmd.Commands {
		setUsageErrors(c)
	}
}
