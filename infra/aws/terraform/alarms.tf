# Alarms that find a failure within about two minutes, optionally notifying an SNS topic.

resource "aws_sns_topic" "alarms" {
  #checkov:skip=CKV_AWS_26: CloudWatch alarms cannot publish to a topic encrypted with the AWS-managed aws/sns key, and alarm messages carry no secrets.
  count = var.alarm_topic_enabled ? 1 : 0

  name = "${var.project}-alarms-${var.environment}"
}

locals {
  alarm_actions = aws_sns_topic.alarms[*].arn
}

# 5XX answered to clients: the ALB's own (no healthy target, timeouts) plus the orchestrator's.
resource "aws_cloudwatch_metric_alarm" "alb_5xx" {
  alarm_name          = "${var.project}-alb-5xx-${var.environment}"
  alarm_description   = "More than ${var.alb_5xx_threshold} 5XX responses from ${aws_lb.this.name} in a minute"
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alb_5xx_threshold
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id          = "total"
    expression  = "FILL(elb, 0) + FILL(target, 0)"
    label       = "ALB 5XX responses"
    return_data = true
  }

  metric_query {
    id = "elb"

    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_ELB_5XX_Count"
      dimensions  = { LoadBalancer = aws_lb.this.arn_suffix }
      period      = 60
      stat        = "Sum"
    }
  }

  metric_query {
    id = "target"

    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_Target_5XX_Count"
      dimensions  = { LoadBalancer = aws_lb.this.arn_suffix }
      period      = 60
      stat        = "Sum"
    }
  }
}

# Fewer tasks running than desired for two minutes: crashes, failed health checks, failed pulls.
# No data counts as breaching (a service with no running task reports nothing).
resource "aws_cloudwatch_metric_alarm" "running_tasks" {
  for_each = { for name, service in local.services : name => service if service.desired_count > 0 }

  alarm_name          = "${var.project}-${each.key}-running-tasks-${var.environment}"
  alarm_description   = "Fewer than ${each.value.desired_count} ${each.key} tasks running"
  namespace           = "ECS/ContainerInsights"
  metric_name         = "RunningTaskCount"
  dimensions          = { ClusterName = aws_ecs_cluster.this.name, ServiceName = aws_ecs_service.this[each.key].name }
  statistic           = "Minimum"
  period              = 60
  evaluation_periods  = 2
  comparison_operator = "LessThanThreshold"
  threshold           = each.value.desired_count
  treat_missing_data  = "breaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# Jobs that ended in `failed`, from the orchestrator's EMF lines.
resource "aws_cloudwatch_metric_alarm" "job_failed" {
  alarm_name          = "${var.project}-job-failed-${var.environment}"
  alarm_description   = "More than ${var.job_failed_threshold} jobs failed in a minute; the orchestrator log group has each failure's cause"
  namespace           = var.metrics_namespace
  metric_name         = "JobFailed"
  dimensions          = { Service = "orchestrator", Environment = var.environment }
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.job_failed_threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}
