# VPC (created unless var.vpc_id is given) and the security groups that enforce who talks to whom:
# internet -> ALB :80/:443 -> orchestrator :8080 -> worker :8081. Tasks reach AWS APIs over HTTPS.

locals {
  vpc_created        = var.vpc_id == null
  vpc_id             = local.vpc_created ? aws_vpc.this[0].id : var.vpc_id
  public_subnet_ids  = local.vpc_created ? aws_subnet.public[*].id : var.public_subnet_ids
  private_subnet_ids = local.vpc_created ? aws_subnet.private[*].id : var.private_subnet_ids
  azs                = var.availability_zones
}

resource "aws_vpc" "this" {
  #checkov:skip=CKV2_AWS_11: VPC flow logs are left to the account's network logging; service logs are in CloudWatch.
  count = local.vpc_created ? 1 : 0

  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true # Cloud Map private DNS needs both.

  tags = { Name = "${var.project}-vpc-${var.environment}" }
}

# Takes over the VPC's default security group and leaves it without rules, so nothing can use it by accident.
resource "aws_default_security_group" "this" {
  count = local.vpc_created ? 1 : 0

  vpc_id = aws_vpc.this[0].id
  tags   = { Name = "${var.project}-default-${var.environment}" }
}

resource "aws_internet_gateway" "this" {
  count = local.vpc_created ? 1 : 0

  vpc_id = aws_vpc.this[0].id
  tags   = { Name = "${var.project}-igw-${var.environment}" }
}

resource "aws_subnet" "public" {
  count = local.vpc_created ? length(local.azs) : 0

  vpc_id            = aws_vpc.this[0].id
  availability_zone = local.azs[count.index]
  cidr_block        = cidrsubnet(var.vpc_cidr, 24 - tonumber(split("/", var.vpc_cidr)[1]), count.index)

  tags = { Name = "${var.project}-public-${local.azs[count.index]}-${var.environment}" }
}

resource "aws_subnet" "private" {
  count = local.vpc_created ? length(local.azs) : 0

  vpc_id            = aws_vpc.this[0].id
  availability_zone = local.azs[count.index]
  cidr_block        = cidrsubnet(var.vpc_cidr, 24 - tonumber(split("/", var.vpc_cidr)[1]), count.index + 10)

  tags = { Name = "${var.project}-private-${local.azs[count.index]}-${var.environment}" }
}

resource "aws_route_table" "public" {
  count = local.vpc_created ? 1 : 0

  vpc_id = aws_vpc.this[0].id
  tags   = { Name = "${var.project}-public-${var.environment}" }
}

resource "aws_route" "public_internet" {
  count = local.vpc_created ? 1 : 0

  route_table_id         = aws_route_table.public[0].id
  destination_cidr_block = "0.0.0.0/0"
  gateway_id             = aws_internet_gateway.this[0].id
}

resource "aws_route_table_association" "public" {
  count = local.vpc_created ? length(local.azs) : 0

  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public[0].id
}

# One NAT gateway (not one per AZ): the tasks only need outbound calls to AWS APIs, and a
# second NAT doubles the fixed cost of a dev environment. Losing its AZ stops new task starts.
resource "aws_eip" "nat" {
  count = local.vpc_created ? 1 : 0

  domain = "vpc"
  tags   = { Name = "${var.project}-nat-${var.environment}" }

  depends_on = [aws_internet_gateway.this]
}

resource "aws_nat_gateway" "this" {
  count = local.vpc_created ? 1 : 0

  allocation_id = aws_eip.nat[0].id
  subnet_id     = aws_subnet.public[0].id
  tags          = { Name = "${var.project}-nat-${var.environment}" }
}

resource "aws_route_table" "private" {
  count = local.vpc_created ? 1 : 0

  vpc_id = aws_vpc.this[0].id
  tags   = { Name = "${var.project}-private-${var.environment}" }
}

resource "aws_route" "private_nat" {
  count = local.vpc_created ? 1 : 0

  route_table_id         = aws_route_table.private[0].id
  destination_cidr_block = "0.0.0.0/0"
  nat_gateway_id         = aws_nat_gateway.this[0].id
}

resource "aws_route_table_association" "private" {
  count = local.vpc_created ? length(local.azs) : 0

  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private[0].id
}

# Gateway endpoints are free: DynamoDB calls and ECR image layers (served from S3) stay off the NAT.
resource "aws_vpc_endpoint" "gateway" {
  for_each = local.vpc_created ? toset(["dynamodb", "s3"]) : toset([])

  vpc_id            = aws_vpc.this[0].id
  service_name      = "com.amazonaws.${var.region}.${each.key}"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = [aws_route_table.private[0].id]

  tags = { Name = "${var.project}-${each.key}-${var.environment}" }
}

# --- Security groups -------------------------------------------------------------------------

resource "aws_security_group" "alb" {
  name        = "${var.project}-alb-${var.environment}"
  description = "Ghost Engine ALB: HTTP(S) from the allowed CIDRs, out only to the orchestrator"
  vpc_id      = local.vpc_id
  tags        = { Name = "${var.project}-alb-${var.environment}" }
}

resource "aws_security_group" "service" {
  for_each = local.services

  name        = "${var.project}-${each.key}-${var.environment}"
  description = "Ghost Engine ${each.key} tasks"
  vpc_id      = local.vpc_id
  tags        = { Name = "${var.project}-${each.key}-${var.environment}" }
}

# Rules as aws_security_group_rule resources (not inline blocks): the orchestrator and worker
# groups refer to each other, which inline rules would turn into a dependency cycle.

resource "aws_security_group_rule" "alb_http" {
  #checkov:skip=CKV_AWS_260: the ALB is the public entry point; with certificate_arn set, port 80 only redirects to HTTPS.
  security_group_id = aws_security_group.alb.id
  type              = "ingress"
  description       = "HTTP from the allowed CIDRs"
  protocol          = "tcp"
  from_port         = 80
  to_port           = 80
  cidr_blocks       = var.alb_ingress_cidrs
}

resource "aws_security_group_rule" "alb_https" {
  count = var.certificate_arn == null ? 0 : 1

  security_group_id = aws_security_group.alb.id
  type              = "ingress"
  description       = "HTTPS from the allowed CIDRs"
  protocol          = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_blocks       = var.alb_ingress_cidrs
}

resource "aws_security_group_rule" "alb_to_orchestrator" {
  security_group_id        = aws_security_group.alb.id
  type                     = "egress"
  description              = "To the orchestrator tasks"
  protocol                 = "tcp"
  from_port                = local.services.orchestrator.port
  to_port                  = local.services.orchestrator.port
  source_security_group_id = aws_security_group.service["orchestrator"].id
}

resource "aws_security_group_rule" "orchestrator_from_alb" {
  security_group_id        = aws_security_group.service["orchestrator"].id
  type                     = "ingress"
  description              = "From the ALB only"
  protocol                 = "tcp"
  from_port                = local.services.orchestrator.port
  to_port                  = local.services.orchestrator.port
  source_security_group_id = aws_security_group.alb.id
}

resource "aws_security_group_rule" "orchestrator_to_worker" {
  security_group_id        = aws_security_group.service["orchestrator"].id
  type                     = "egress"
  description              = "To the worker tasks"
  protocol                 = "tcp"
  from_port                = local.services.worker.port
  to_port                  = local.services.worker.port
  source_security_group_id = aws_security_group.service["worker"].id
}

resource "aws_security_group_rule" "worker_from_orchestrator" {
  security_group_id        = aws_security_group.service["worker"].id
  type                     = "ingress"
  description              = "From the orchestrator only"
  protocol                 = "tcp"
  from_port                = local.services.worker.port
  to_port                  = local.services.worker.port
  source_security_group_id = aws_security_group.service["orchestrator"].id
}

# Both services reach AWS APIs over HTTPS: the image pull (ECR), CloudWatch Logs and, for the
# orchestrator, DynamoDB. Those endpoints have no fixed addresses, hence 0.0.0.0/0 on 443 only.
resource "aws_security_group_rule" "service_https" {
  for_each = local.services

  security_group_id = aws_security_group.service[each.key].id
  type              = "egress"
  description       = "HTTPS to AWS APIs (ECR, CloudWatch Logs, DynamoDB)"
  protocol          = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_blocks       = ["0.0.0.0/0"]
}
