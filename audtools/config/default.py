"""The example configuration that ``audtools init`` writes (SPEC §2.1)."""

from __future__ import annotations

DEFAULT_CONFIG = '''\
# audtools workspace configuration. Paths are relative to this folder.
# Keys are never written here: a data source names the environment variable (key_env) or the
# owner-only file (key_file) that holds its key as hex text.

[workspace]
database = "campaign.duckdb"      # the Campaign database
import_drop = "drops/import"      # the importSharedAudience drop (AAM outbound files)
export_drop = "drops/export"      # the exportSharedAudience drop (onboarding files)
default_operator = "analyst"
default_region = "US"             # country for phone numbers written without one
lock_timeout = 60                 # seconds to wait for another process's run
settle_seconds = 120              # a batch without .info is read once its files are this old
max_rejects_kept = 100000         # rejected rows listed in a run's rejects.csv (all are counted)
max_line_bytes = 8388608          # a longer line is a rejected row (bad_syntax), read in bounded memory
max_uncompressed_bytes = 53687091200   # per compressed file (50 GiB) ...
max_compression_ratio = 200       # ... and per compressed file: beyond either, its batch waits

[[operators]]
name = "analyst"
login = "ims"                     # "ims" (Adobe ID) or "native"

[[data_sources]]                  # Campaign's default Visitor ID data source
id = "defaultDataSource"
label = "Recipient - Visitor ID"
dpid = 14016                      # AAM data source ID of the IDs in the files
destination_id = 46390            # AAM destination ID
reconciliation = "visitor_id"

[[data_sources]]
id = "crmDeclaredId"
label = "CRM ID - Declared ID"
dpid = 14017
destination_id = 46391
reconciliation = "declared_id"
reconciliation_key = "crm_id"     # the profile column that holds the declared ID
hash = "none"                     # "none" or "sha256"

[[data_sources]]
id = "emailEncrypted"
label = "Email - Encrypted Declared ID"
dpid = 14018
destination_id = 46392
reconciliation = "declared_id"
reconciliation_key = "email"
channel = "email"                 # "email", "sms" or "other" (default "other")
encryption = "aes-cbc"            # "none" or "aes-cbc" (AES, CBC mode, PKCS7 padding)
key_env = "AUDTOOLS_KEY_EMAIL"    # the key as hex text (16, 24 or 32 bytes), from this variable ...
# key_file = "keys/email.key"     # ... or from a file of hex text readable by its owner only
iv = "000102030405060708090a0b0c0d0e0f"   # hex, 16 bytes, fixed per data source
encoding = "base64"               # how ciphertexts are written: "base64" or "hex"
'''
