// Command example-service serves the service's HTTP API on :8080.
package main

import (
	"log"

	"example-service/internal/server"
)

func main() {
	log.Fatal(server.FromEnv().ListenAndServe())
}
