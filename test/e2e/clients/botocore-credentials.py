# Asks an unmodified botocore for credentials, configured only by the environment, and prints them.
import json
import botocore
import botocore.session

credentials = botocore.session.get_session().get_credentials()
if credentials is None:
    raise SystemExit("botocore found no credentials")
frozen = credentials.get_frozen_credentials()
print(json.dumps({
    "botocore": botocore.__version__,
    "method": credentials.method,
    "accessKeyId": frozen.access_key,
    "secretAccessKey": frozen.secret_key,
    "sessionToken": frozen.token,
}))
