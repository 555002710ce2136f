// Asks the unmodified AWS SDK for Go v1 for credentials, configured only by the environment, and
// prints what it obtained. Built offline from Debian's golang-github-aws-aws-sdk-go-dev.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/aws/aws-sdk-go/aws/session"
)

func main() {
	sess, err := session.NewSession()
	if err != nil {
		fmt.Fprintln(os.Stderr, "session:", err)
		os.Exit(1)
	}
	creds, err := sess.Config.Credentials.Get()
	if err != nil {
		fmt.Fprintln(os.Stderr, "credentials:", err)
		os.Exit(1)
	}
	_ = json.NewEncoder(os.Stdout).Encode(map[string]string{"provider": creds.ProviderName, "accessKeyId": creds.AccessKeyID})
}
