output "alb_dns_name" {
  description = "DNS name of the ALB: point your domain (the certificate's name) at it with a CNAME or an alias record."
  value       = aws_lb.this.dns_name
}

output "alb_zone_id" {
  description = "Route 53 zone of the ALB, for an alias record."
  value       = aws_lb.this.zone_id
}

output "target_group_arn" {
  description = "Target group of the floodgate tasks (health check: GET /readyz)."
  value       = aws_lb_target_group.floodgate.arn
}

output "ecs_cluster_name" {
  description = "ECS cluster running floodgate."
  value       = aws_ecs_cluster.this.name
}

output "ecs_service_name" {
  description = "ECS service of the floodgate tasks."
  value       = aws_ecs_service.floodgate.name
}

output "log_group_name" {
  description = "CloudWatch log group of floodgate's logs and access log."
  value       = aws_cloudwatch_log_group.floodgate.name
}

output "redis_configuration_endpoint" {
  description = "Configuration endpoint of the ElastiCache cluster (host:port)."
  value       = "${aws_elasticache_replication_group.redis.configuration_endpoint_address}:${local.redis_port}"
}

output "store_url" {
  description = "floodgate's store URL for this cluster."
  value       = local.store_url
}

output "floodgate_config" {
  description = "The floodgate.yaml the tasks run with: check it with `floodgate validate`."
  value       = local.floodgate_config
}

output "security_group_ids" {
  description = "Security groups of the ALB, the tasks and Redis."
  value = {
    alb   = aws_security_group.alb.id
    tasks = aws_security_group.tasks.id
    redis = aws_security_group.redis.id
  }
}
