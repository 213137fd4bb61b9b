package redistest_test

import (
	"context"
	"fmt"
	"log"

	"github.com/redis/go-redis/v9"

	"github.com/go-relay/relay/internal/testkit/redistest"
)

// A program outside tests starts a server with Run and shuts it down itself.
// Without redis-server on PATH, [redistest.Main] leaves this example out.
func ExampleRun() {
	srv, err := redistest.Run(redistest.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown()
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rc.Close()
	pong, err := rc.Ping(context.Background()).Result()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(pong)
	// Output: PONG
}
