// Command receiver is the OTLP/HTTP trace receiver of tests/tracing.rs: it decodes each POST
// to /v1/traces with the OpenTelemetry Collector's own protobuf types
// (go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp), as a collector's otlp receiver
// does, and appends every span to the file given by -out as one JSON line. A body that does
// not decode is answered 400 and counted in the file as a line {"error": "..."}, so a test
// sees an encoding mistake instead of a missing span. Prints its base URL on stdout once it
// listens, and serves until stdin closes or the process is killed.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"

	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// span is one exported span, flattened with its resource's and scope's identity.
type span struct {
	Resource     map[string]any `json:"resource"`
	Scope        string         `json:"scope"`
	TraceID      string         `json:"trace_id"`
	SpanID       string         `json:"span_id"`
	ParentSpanID string         `json:"parent_span_id"`
	TraceState   string         `json:"trace_state"`
	Flags        uint32         `json:"flags"`
	Name         string         `json:"name"`
	Kind         string         `json:"kind"`
	StartNanos   uint64         `json:"start_unix_nano"`
	EndNanos     uint64         `json:"end_unix_nano"`
	Attributes   map[string]any `json:"attributes"`
	Status       string         `json:"status"`
	StatusMsg    string         `json:"status_message"`
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	out := flag.String("out", "spans.jsonl", "file the spans are appended to, one JSON object a line")
	flag.Parse()

	f, err := os.OpenFile(*out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "receiver:", err)
		os.Exit(1)
	}
	var mu sync.Mutex
	write := func(v any) {
		line, _ := json.Marshal(v)
		mu.Lock()
		defer mu.Unlock()
		f.Write(append(line, '\n'))
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/v1/traces", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/x-protobuf" {
			write(map[string]string{"error": "content-type " + ct})
			http.Error(w, "application/x-protobuf only", http.StatusUnsupportedMediaType)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req := ptraceotlp.NewExportRequest()
		if err := req.UnmarshalProto(body); err != nil {
			write(map[string]string{"error": err.Error()})
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rss := req.Traces().ResourceSpans()
		for i := 0; i < rss.Len(); i++ {
			rs := rss.At(i)
			res := rs.Resource().Attributes().AsRaw()
			sss := rs.ScopeSpans()
			for j := 0; j < sss.Len(); j++ {
				ss := sss.At(j)
				spans := ss.Spans()
				for k := 0; k < spans.Len(); k++ {
					s := spans.At(k)
					write(span{
						Resource: res,
						Scope:    ss.Scope().Name(),
						// Empty IDs print as "" (pdata's String), a root span's parent too.
						TraceID:      s.TraceID().String(),
						SpanID:       s.SpanID().String(),
						ParentSpanID: s.ParentSpanID().String(),
						TraceState:   s.TraceState().AsRaw(),
						Flags:        s.Flags(),
						Name:         s.Name(),
						Kind:         s.Kind().String(),
						StartNanos:   uint64(s.StartTimestamp()),
						EndNanos:     uint64(s.EndTimestamp()),
						Attributes:   s.Attributes().AsRaw(),
						Status:       s.Status().Code().String(),
						StatusMsg:    s.Status().Message(),
					})
				}
			}
		}
		resp, _ := ptraceotlp.NewExportResponse().MarshalProto()
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(resp)
	})

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "receiver:", err)
		os.Exit(1)
	}
	fmt.Printf("http://%s\n", ln.Addr())
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	if err := http.Serve(ln, mux); err != nil {
		fmt.Fprintln(os.Stderr, "receiver:", err)
		os.Exit(1)
	}
}
