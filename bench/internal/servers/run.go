package servers

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"
)

// Main runs one server process: the server named by -server on -addr with
// the control API (see Mux), until SIGINT or SIGTERM. args excludes the
// program name.
func Main(args []string) error {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	name := fs.String("server", "", "server to run: "+fmt.Sprint(Names()))
	addr := fs.String("addr", "127.0.0.1:8700", "listen address (loopback)")
	redis := fs.String("redis", "", "Redis address for a multi-node ws cluster (empty: in-memory)")
	prefix := fs.String("redis-prefix", "", "Redis key prefix for this cluster run")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	useTLS := fs.Bool("tls", false, "serve https/wss with a self-signed certificate for 127.0.0.1 made at start (the control API too)")
	compress := fs.Bool("compress", false, "offer permessage-deflate to clients that ask (servers that support it)")
	level := fs.Int("compress-level", 1, "compression level 1..9 with -compress")
	pusherProto := fs.Bool("pusher", false, "also serve the Pusher protocol on /ws?protocol=7 (ws only)")
	history := fs.Int("history", 0, "keep the last N publications of every channel (ws only; 0: no history)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-addr %s: the harness only listens on loopback", *addr)
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s, err := New(ctx, *name, Options{Redis: *redis, RedisPrefix: *prefix, Compress: *compress, CompressLevel: *level, Pusher: *pusherProto, History: *history})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: Mux(ctx, s), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	if *useTLS {
		// As the README's server does (ListenAndServeTLS), with a
		// certificate made here instead of files.
		cert, err := selfSignedCert()
		if err != nil {
			return err
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
		go func() { errc <- srv.ServeTLS(ln, "", "") }()
	} else {
		go func() { errc <- srv.Serve(ln) }()
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	srv.Shutdown(shutdownCtx)
	s.Close()
	return nil
}
