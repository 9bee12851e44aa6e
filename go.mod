module github.com/cc-ci/acceptance

go 1.26.8

require (
	filippo.io/age v1.3.2
	github.com/stretchr/testify v1.11.1
	golang.org/x/crypto v0.59.0
)

require (
	filippo.io/hpke v0.4.0 // indirect
	github.com/davecgh/go-spew v1.1.1 // indirect
	github.com/pmezard/go-difflib v1.0.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)
