// Package dct runs the real Docker Content Trust backend for tests, benchmarks
// and demos: Debian's notary-server (optionally with notary-signer, which
// makes the server's timestamp and snapshot keys ECDSA as on Docker Hub), a
// docker-registry, and the notary CLI driven the way `docker trust` drives it.
//
// Everything listens on 127.0.0.1 on free ports, over TLS from a throwaway
// CA where the real service uses TLS. Each server has a constructor that
// returns an error and a Close method (StartNotaryServer, StartRegistry,
// NewSignerAt, StartSlowProxy, StartRequestCounter) for programs such as
// cmd/dctsandbox, and a testing.TB wrapper (NewNotaryServer, NewRegistry,
// NewSigner, NewSlowProxy, NewRequestCounter) that cleans up after the test.
// When a binary is missing the wrappers skip the test, unless the CI
// environment variable is set, in which case they fail it.
//
// Typical test:
//
//	srv := dct.NewNotaryServer(t, dct.NotaryOptions{ECDSAServerKeys: true})
//	reg := dct.NewRegistry(t, dct.RegistryOptions{})
//	sg := dct.NewSigner(t, srv)
//	digest, size, err := reg.PushRandomImage("demo/app", "v1")
//	gun := reg.Repo("demo/app")
//	err = sg.Init(gun)                       // notary init + server-managed snapshot key
//	err = sg.Sign(gun, "v1", digest, size)   // addhash + publish into targets
//	rootPEM, keyID, err := sg.RootKeyPEM(gun) // what a verifier pins
//
// Fault injection: NotaryServer.Stop and Start kill and restart notary-server
// on the same port (memory storage starts empty; Signer.Backup before the
// stop and Signer.Restore after the start bring a repository back unchanged
// when ECDSAServerKeys is set). SlowProxy delays or black-holes TCP traffic
// to the server; RequestCounter is a TLS reverse proxy that counts the HTTP
// requests reaching it. They chain: a RequestCounter whose upstream is a
// SlowProxy's URL counts requests to a slow server.
package dct
