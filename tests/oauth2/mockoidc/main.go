// Command mockoidc runs github.com/oauth2-proxy/mockoidc, a real OpenID Connect provider
// (discovery, authorization, token, userinfo, JWKS endpoints), on a loopback address with
// the client id and secret given on the command line, for tests/oauth2_proxy.rs. Every
// login is the library's default user (jane.doe@example.com). Prints the issuer URL on
// stdout once it listens, and serves until stdin closes or the process is killed.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/oauth2-proxy/mockoidc"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	clientID := flag.String("client-id", "portico-test", "OAuth2 client id")
	clientSecret := flag.String("client-secret", "portico-test-secret", "OAuth2 client secret")
	flag.Parse()

	m, err := mockoidc.NewServer(nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mockoidc:", err)
		os.Exit(1)
	}
	m.ClientID = *clientID
	m.ClientSecret = *clientSecret
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mockoidc:", err)
		os.Exit(1)
	}
	if err := m.Start(ln, nil); err != nil {
		fmt.Fprintln(os.Stderr, "mockoidc:", err)
		os.Exit(1)
	}
	fmt.Println(m.Issuer())
	// The test holds stdin open; when it dies, so does this server.
	_, _ = io.Copy(io.Discard, os.Stdin)
}
