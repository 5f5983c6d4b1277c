# The jobs table. `dynamostore.py create-table` creates the same table for local development; a test
# compares the two. Items: one per job, keyed by jobId. Queued and running jobs also carry
# activeShard = "active#<n>" and leaseExpiresAt, which puts them (and only them) in the sparse
# active-by-lease index the orchestrators query (every shard) for expired leases. Every job also carries
# createdKey ("<createdAt>#<jobId>"), listShard ("all#<n>") and stateShard ("<state>#<n>"), n being
# crc32(jobId) mod 4: GET /jobs reads the newest jobs from jobs-by-created, or from jobs-by-state for
# one state, a Query per shard (dynamolist.py; README "Job state in DynamoDB").

resource "aws_dynamodb_table" "this" {
  #checkov:skip=CKV_AWS_119: encrypted with the AWS-managed key; a customer-managed KMS key adds cost and key policy work for no requirement we have.
  name         = local.jobs_table_name
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "jobId"

  attribute {
    name = "jobId"
    type = "S"
  }

  attribute {
    name = "activeShard"
    type = "S"
  }

  attribute {
    name = "leaseExpiresAt"
    type = "N"
  }

  attribute {
    name = "createdKey"
    type = "S"
  }

  attribute {
    name = "listShard"
    type = "S"
  }

  attribute {
    name = "stateShard"
    type = "S"
  }

  global_secondary_index {
    name            = local.active_index
    hash_key        = "activeShard"
    range_key       = "leaseExpiresAt"
    projection_type = "KEYS_ONLY"
  }

  global_secondary_index {
    name            = local.created_index
    hash_key        = "listShard"
    range_key       = "createdKey"
    projection_type = "KEYS_ONLY"
  }

  global_secondary_index {
    name            = local.state_index
    hash_key        = "stateShard"
    range_key       = "createdKey"
    projection_type = "KEYS_ONLY"
  }

  ttl {
    attribute_name = "ttl"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled = true
  }

  deletion_protection_enabled = var.deletion_protection_enabled
}
