// Asks the unmodified AWS SDK for Go v2 for credentials, configured only by the environment, and
// prints what it obtained. Built offline from Debian's golang-github-aws-aws-sdk-go-v2-dev.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/aws/aws-sdk-go-v2/config"
)

func main() {
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "config:", err)
		os.Exit(1)
	}
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "credentials:", err)
		os.Exit(1)
	}
	_ = json.NewEncoder(os.Stdout).Encode(map[string]string{"source": creds.Source, "accessKeyId": creds.AccessKeyID, "region": cfg.Region})
}
