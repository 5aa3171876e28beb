module github.com/trustgate-dev/trustgate/bench/anchor

go 1.26.0

require (
	github.com/docker/distribution v2.7.1+incompatible // indirect
	github.com/docker/go v1.5.1-1.0.20160303222718-d30aec9fd63c // indirect
	github.com/miekg/pkcs11 v1.0.3 // indirect
	github.com/sirupsen/logrus v1.8.1 // indirect
	github.com/theupdateframework/notary v0.7.1-0.20210315103452-bf96a202a09a
	golang.org/x/crypto v0.0.0-20201117144127-c1f2f97bffc9 // indirect
	golang.org/x/sys v0.0.0-20191120155948-bd437916bb0e // indirect
	golang.org/x/term v0.0.0-20201117132131-f5c789dd3221 // indirect
)
