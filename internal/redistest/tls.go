package redistest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// StartTLSServer starts a redis-server that accepts only TLS connections
// (no plain port) and requires password, as managed Redis services do, on
// a spare port in 7000-7999, with a certificate for 127.0.0.1 made for
// the test. It returns the server and a client configuration that trusts
// that certificate, and kills the server when tb ends. It skips tb if
// redis-server is not installed, and fails it if redis-server was built
// without TLS.
func StartTLSServer(tb testing.TB, password string) (*Server, *tls.Config) {
	tb.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		skip(tb, "redis-server not installed (apt-get install redis-server); skipping a test that starts its own Redis")
	}
	dir := tb.TempDir()
	certFile, keyFile, pool := selfSigned(tb, dir)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	var lastErr error
	for range 20 {
		port := 7000 + mrand.IntN(1000)
		if !free(port) {
			continue
		}
		s := &Server{Port: port, Addr: "127.0.0.1:" + strconv.Itoa(port), dir: dir, tls: cfg, password: password,
			extra: []string{"--port", "0", "--tls-port", strconv.Itoa(port), "--tls-cert-file", certFile,
				"--tls-key-file", keyFile, "--tls-ca-cert-file", certFile, "--tls-auth-clients", "no",
				"--requirepass", password}}
		if lastErr = s.Start(); lastErr == nil {
			tb.Cleanup(s.Kill)
			return s, cfg.Clone()
		}
	}
	tb.Fatalf("could not start redis-server with TLS (built without it?): %v", lastErr)
	return nil, nil
}

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key
// into dir, and returns their paths and a pool holding the certificate.
func selfSigned(tb testing.TB, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "redistest"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600); err != nil {
		tb.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}
