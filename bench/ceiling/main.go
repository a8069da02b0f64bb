// Command ceiling is the HTTP ceiling of the benchmark: a bare net/http
// server answering every request with the same JSON body, about the size of
// a call transfer resource. Whatever rate it reaches on a machine, with the
// same load generator, is the most any Go HTTP API can reach there.
//
//	ceiling -listen 127.0.0.1:0
//
// It prints "ceiling on http://ADDR" once listening and stops on SIGINT or
// SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

// body is shaped like a SIP call transfer as the API returns it (~400 bytes).
const body = `{"id":"bench-ceiling-0000000001","externalConversationId":"conv-0000000001","status":"ACTIVE",` +
	`"type":"SIP","createdAt":"2025-01-01T00:00:00.000Z","expiresAt":"2025-01-01T01:00:00.000Z",` +
	`"expireAt":"2025-01-01T01:00:00.000Z","inputContext":{"taskName":"billing-dispute",` +
	`"inputVariables":{"customerId":"C-12345","intent":"refund","language":"en-US"}},` +
	`"sip":{"returnTransferType":"BYE"}}` + "\n"

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	flag.Parse()

	payload := []byte(body)
	length := strconv.Itoa(len(payload))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr := w.Header()
		hdr.Set("Content-Type", "application/json")
		hdr.Set("Content-Length", length)
		w.WriteHeader(http.StatusOK)
		w.Write(payload)
	})

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ceiling:", err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	fmt.Printf("ceiling on http://%s (body %d bytes)\n", ln.Addr(), len(payload))
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, "ceiling:", err)
		os.Exit(1)
	}
}
