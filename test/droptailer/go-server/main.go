// A droptailer server on grpc-go, the gRPC implementation the real droptailer is built with, for
// the interop test and the drop-log bench: mutual TLS with client certificates required, unary
// proto.Droptailer/Push. Requests are taken as bytes (a pass-through codec) and read with
// protowire, so no generated code is needed. Built (test/droptailer/go-server.ts) from Debian's
// golang-go and golang-google-grpc-dev (GOPATH mode, no network).
//
// argv[1] is a directory with ca.crt, server.crt and server.key; prints {"port":N} once it
// listens, then answers every line "count" on stdin with {"received":N,"distinct":N,"malformed":N}
// and every line "dump" with the first 1,000 drops it received, as JSON lines
// {"seconds":S,"nanos":N,"fields":{...}} followed by "end".
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/encoding"
	"google.golang.org/protobuf/encoding/protowire"
)

// raw passes messages through as bytes; registered under "proto", the name clients announce.
type raw struct{}

func (raw) Marshal(v interface{}) ([]byte, error) { return *(v.(*[]byte)), nil }
func (raw) Unmarshal(data []byte, v interface{}) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (raw) Name() string { return "proto" }

type drop struct {
	Seconds int64             `json:"seconds"`
	Nanos   int32             `json:"nanos"`
	Fields  map[string]string `json:"fields"`
}

var (
	mu        sync.Mutex
	received  int
	malformed int
	distinct  = map[string]struct{}{}
	kept      []drop
)

// timestamp reads a google.protobuf.Timestamp.
func timestamp(b []byte, d *drop) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.VarintType {
			return false
		}
		b = b[n:]
		v, m := protowire.ConsumeVarint(b)
		if m < 0 {
			return false
		}
		b = b[m:]
		if num == 1 {
			d.Seconds = int64(v)
		} else if num == 2 {
			d.Nanos = int32(v)
		}
	}
	return true
}

// parse reads a proto.Drop: the timestamp (field 1) and the map<string,string> entries (field 2).
func parse(b []byte) (drop, bool) {
	d := drop{Fields: map[string]string{}}
	out := d.Fields
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return d, false
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			ts, m := protowire.ConsumeBytes(b)
			if m < 0 || !timestamp(ts, &d) {
				return d, false
			}
			b = b[m:]
			continue
		}
		if num == 2 && typ == protowire.BytesType {
			entry, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return d, false
			}
			b = b[m:]
			var k, v string
			for len(entry) > 0 {
				en, et, l := protowire.ConsumeTag(entry)
				if l < 0 || et != protowire.BytesType {
					return d, false
				}
				entry = entry[l:]
				s, sl := protowire.ConsumeBytes(entry)
				if sl < 0 {
					return d, false
				}
				entry = entry[sl:]
				if en == 1 {
					k = string(s)
				} else if en == 2 {
					v = string(s)
				}
			}
			out[k] = v
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return d, false
		}
		b = b[m:]
	}
	return d, true
}

func push(_ interface{}, _ context.Context, dec func(interface{}) error, _ grpc.UnaryServerInterceptor) (interface{}, error) {
	var in []byte
	if err := dec(&in); err != nil {
		return nil, err
	}
	d, ok := parse(in)
	mu.Lock()
	if ok {
		received++
		f := d.Fields
		distinct[f["ID"]+":"+f["SPT"]+":"+f["SRC"]] = struct{}{}
		if len(kept) < 1000 {
			kept = append(kept, d)
		}
	} else {
		malformed++
	}
	mu.Unlock()
	out := []byte{}
	return &out, nil
}

func main() {
	dir := os.Args[1]
	read := func(n string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			panic(err)
		}
		return b
	}
	cert, err := tls.X509KeyPair(read("server.crt"), read("server.key"))
	if err != nil {
		panic(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(read("ca.crt"))
	creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert})
	encoding.RegisterCodec(raw{})
	s := grpc.NewServer(grpc.Creds(creds))
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: "proto.Droptailer",
		HandlerType: (*interface{})(nil),
		Methods:     []grpc.MethodDesc{{MethodName: "Push", Handler: push}},
	}, struct{}{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	fmt.Printf("{\"port\":%d}\n", l.Addr().(*net.TCPAddr).Port)
	go func() { _ = s.Serve(l) }()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch strings.TrimSpace(in.Text()) {
		case "count":
			mu.Lock()
			fmt.Printf("{\"received\":%d,\"distinct\":%d,\"malformed\":%d}\n", received, len(distinct), malformed)
			mu.Unlock()
		case "dump":
			mu.Lock()
			for _, d := range kept {
				b, _ := json.Marshal(d)
				fmt.Printf("%s\n", b)
			}
			mu.Unlock()
			fmt.Printf("end\n")
		}
	}
	s.Stop()
}
