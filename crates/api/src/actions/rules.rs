//! Automatic backup rules: DescribeBackupRules and SetBackupRules (fields
//! per the SDK's models, parameters per the README's API reference; the
//! ranges are checked below).
//!
//! DescribeBackupRules also answers the instance's restorable window
//! (`RestoreWindow`, an extra field), computed by `catalog::window`.
//!
//! SetBackupRules changes only the parameters it is given; the others keep
//! their current value (the defaults for an instance never configured).
//! Every value is checked before anything is stored, and the combination
//! is checked too (long-term days must suit the long-term interval).

use jiff::Timestamp;

use mongobak_catalog::rule::parse_days_csv;
use mongobak_catalog::{days_csv, BackupRule, Instance, LongTermInterval};

use super::backups::check_backup_method;
use super::{authorize_instance, to_fields, CallContext, Fields};
use crate::error::{clip, ApiError, ErrorKind};
use crate::model::{
    BackupTotalSize, DescribeBackupRulesResponse, RestoreWindowSpan, SetBackupRulesResponse,
};
use crate::params::Params;

// ---------------------------------------------------------------- Describe

pub(super) async fn describe_backup_rules(
    ctx: &CallContext<'_>,
    mut p: Params,
) -> Result<Fields, ApiError> {
    let instance_id = p.string("InstanceId")?;
    p.finish()?;
    let instance = authorize_instance(ctx, &instance_id).await?;
    let rule = current_rule(ctx, &instance.id).await?;
    let (stored, oplog) = ctx
        .catalog()
        .backups()
        .stored_bytes_per_instance()
        .await
        .map_err(crate::catalog_error)?
        .into_iter()
        .find(|(id, _, _)| *id == instance.id)
        .map_or((0, 0), |(_, all, oplog)| (all, oplog));
    // The oplog kept for point-in-time recovery counts as oplog too.
    let continuous = ctx
        .catalog()
        .oplog()
        .stored_bytes(&instance.id)
        .await
        .map_err(crate::catalog_error)?;
    to_fields(DescribeBackupRulesResponse {
        backup_save_time: rule.retention_days,
        backup_time: rule.backup_hour.into(),
        backup_method: rule.backup_method,
        backup_frequency: rule.frequency_hours.into(),
        active_weekdays: days_csv(&rule.active_weekdays),
        long_term_interval: rule.long_term_interval.as_str().to_string(),
        long_term_active_days: days_csv(&rule.long_term_active_days),
        long_term_expired_days: rule.long_term_expired_days,
        oplog_expired_days: rule.oplog_expired_days,
        backup_version: rule.backup_version,
        alert_threshold: rule.alert_threshold,
        backup_total_size: BackupTotalSize {
            snapshot_size: stored.saturating_sub(oplog),
            oplog_size: oplog + continuous,
            free_quota: 0,
        },
        notify: rule.notify,
        restore_window: restore_window(ctx, &instance).await?,
    })
}

/// The seconds the instance can be restored to, in the API's time zone.
async fn restore_window(
    ctx: &CallContext<'_>,
    instance: &Instance,
) -> Result<Vec<RestoreWindowSpan>, ApiError> {
    let spans = ctx
        .catalog()
        .oplog()
        .instance_spans(instance)
        .await
        .map_err(crate::catalog_error)?;
    Ok(spans
        .into_iter()
        .map(|span| RestoreWindowSpan {
            start_time: ctx.api.format_time(span.from),
            end_time: ctx.api.format_time(span.to),
        })
        .collect())
}

/// The instance's stored rule, or the defaults it follows.
async fn current_rule(ctx: &CallContext<'_>, instance_id: &str) -> Result<BackupRule, ApiError> {
    Ok(ctx
        .catalog()
        .rules()
        .get(instance_id)
        .await
        .map_err(crate::catalog_error)?
        .unwrap_or_else(|| {
            BackupRule::defaults(instance_id, ctx.api.config.default_retention_days)
        }))
}

// ---------------------------------------------------------------- Set

/// The parameters of SetBackupRules as given (absent: unchanged).
struct RuleChanges {
    backup_method: Option<i64>,
    backup_time: Option<i64>,
    backup_frequency: Option<i64>,
    notify: Option<bool>,
    retention_period: Option<i64>,
    active_weekdays: Option<String>,
    long_term_interval: Option<String>,
    long_term_active_days: Option<String>,
    long_term_expired_days: Option<i64>,
    oplog_expired_days: Option<i64>,
    backup_version: Option<i64>,
    alert_threshold: Option<i64>,
}

/// A parameter and its deprecated alias: either may be given, or both
/// with the same value.
fn aliased<T: PartialEq>(
    current: (&str, Option<T>),
    deprecated: (&str, Option<T>),
) -> Result<Option<T>, ApiError> {
    match (current.1, deprecated.1) {
        (Some(a), Some(b)) if a != b => Err(ApiError::bad_value(
            ErrorKind::InvalidParameter,
            current.0,
            format_args!(
                "{} (its deprecated name) gives a different value",
                deprecated.0
            ),
        )),
        (a, b) => Ok(a.or(b)),
    }
}

fn in_range(
    name: &str,
    value: Option<i64>,
    range: std::ops::RangeInclusive<i64>,
) -> Result<(), ApiError> {
    match value {
        Some(v) if !range.contains(&v) => Err(ApiError::invalid_value(
            name,
            format_args!(
                "{v} is out of range: expected {} to {}",
                range.start(),
                range.end()
            ),
        )),
        _ => Ok(()),
    }
}

fn one_of(name: &str, value: Option<i64>, allowed: &[i64], meaning: &str) -> Result<(), ApiError> {
    match value {
        Some(v) if !allowed.contains(&v) => Err(ApiError::invalid_value(
            name,
            format_args!("{v} is not allowed: expected {meaning}"),
        )),
        _ => Ok(()),
    }
}

impl RuleChanges {
    fn parse(p: &mut Params) -> Result<Self, ApiError> {
        let changes = RuleChanges {
            backup_method: p.opt_i64("BackupMethod")?,
            backup_time: p.opt_i64("BackupTime")?,
            backup_frequency: p.opt_i64("BackupFrequency")?,
            notify: p.opt_bool("Notify")?,
            retention_period: p.opt_i64("BackupRetentionPeriod")?,
            active_weekdays: p.opt_string("ActiveWeekdays")?,
            long_term_interval: aliased(
                ("LongTermInterval", p.opt_string("LongTermInterval")?),
                ("LongTermUnit", p.opt_string("LongTermUnit")?),
            )?,
            long_term_active_days: p.opt_string("LongTermActiveDays")?,
            long_term_expired_days: p.opt_i64("LongTermExpiredDays")?,
            oplog_expired_days: p.opt_i64("OplogExpiredDays")?,
            backup_version: p.opt_i64("BackupVersion")?,
            alert_threshold: aliased(
                ("AlertThreshold", p.opt_i64("AlertThreshold")?),
                ("AlarmWaterLevel", p.opt_i64("AlarmWaterLevel")?),
            )?,
        };
        if let Some(method) = changes.backup_method {
            check_backup_method(method)?;
        }
        in_range("BackupTime", changes.backup_time, 0..=23)?;
        one_of(
            "BackupFrequency",
            changes.backup_frequency,
            &[12, 24],
            "12 (twice a day) or 24 (once a day)",
        )?;
        in_range("BackupRetentionPeriod", changes.retention_period, 7..=365)?;
        in_range(
            "LongTermExpiredDays",
            changes.long_term_expired_days,
            30..=1075,
        )?;
        in_range("OplogExpiredDays", changes.oplog_expired_days, 7..=365)?;
        one_of(
            "BackupVersion",
            changes.backup_version,
            &[0, 1],
            "0 (legacy) or 1 (advanced)",
        )?;
        in_range("AlertThreshold", changes.alert_threshold, 50..=300)?;
        Ok(changes)
    }

    /// `rule` with the changes applied, checked as a whole.
    fn apply(self, mut rule: BackupRule) -> Result<BackupRule, ApiError> {
        if let Some(method) = self.backup_method {
            rule.backup_method = method;
        }
        if let Some(hour) = self.backup_time {
            rule.backup_hour = hour as u8;
        }
        if let Some(frequency) = self.backup_frequency {
            rule.frequency_hours = frequency as u8;
        }
        if let Some(notify) = self.notify {
            rule.notify = notify;
        }
        if let Some(days) = self.retention_period {
            rule.retention_days = days;
        }
        if let Some(text) = self.active_weekdays {
            rule.active_weekdays = parse_days_csv(&text, 0..=6).ok_or_else(|| {
                ApiError::invalid_value(
                    "ActiveWeekdays",
                    format_args!(
                        "`{}` is not a comma-separated list of weekdays 0 (Sunday) to 6",
                        clip(&text)
                    ),
                )
            })?;
        }
        if let Some(text) = self.long_term_interval {
            rule.long_term_interval = LongTermInterval::parse(&text).ok_or_else(|| {
                ApiError::invalid_value(
                    "LongTermInterval",
                    format_args!("`{}` is not weekly, monthly or empty (off)", clip(&text)),
                )
            })?;
        }
        let day_range = match rule.long_term_interval {
            LongTermInterval::Monthly => 1..=31,
            _ => 0..=6,
        };
        if let Some(text) = self.long_term_active_days {
            if rule.long_term_interval == LongTermInterval::Off && !text.is_empty() {
                return Err(ApiError::invalid_value(
                    "LongTermActiveDays",
                    "long-term days need LongTermInterval (weekly or monthly)",
                ));
            }
            rule.long_term_active_days = if text.is_empty() {
                Vec::new()
            } else {
                parse_days_csv(&text, day_range.clone()).ok_or_else(|| {
                    ApiError::invalid_value(
                        "LongTermActiveDays",
                        format_args!(
                            "`{}` is not a comma-separated list of {}",
                            clip(&text),
                            days_meaning(rule.long_term_interval)
                        ),
                    )
                })?
            };
        }
        match rule.long_term_interval {
            LongTermInterval::Off => rule.long_term_active_days.clear(),
            interval => {
                if rule.long_term_active_days.is_empty()
                    || rule
                        .long_term_active_days
                        .iter()
                        .any(|d| !day_range.contains(d))
                {
                    return Err(ApiError::invalid_value(
                        "LongTermActiveDays",
                        format_args!(
                            "a {} long-term rule needs {}",
                            interval.as_str(),
                            days_meaning(interval)
                        ),
                    ));
                }
            }
        }
        if let Some(expired) = self.long_term_expired_days {
            rule.long_term_expired_days = expired;
        }
        if let Some(days) = self.oplog_expired_days {
            rule.oplog_expired_days = days;
        }
        if let Some(version) = self.backup_version {
            rule.backup_version = version;
        }
        if let Some(threshold) = self.alert_threshold {
            rule.alert_threshold = threshold;
        }
        rule.explicit = true;
        Ok(rule)
    }
}

fn days_meaning(interval: LongTermInterval) -> &'static str {
    match interval {
        LongTermInterval::Monthly => "days of the month 1 to 31",
        _ => "weekdays 0 (Sunday) to 6",
    }
}

pub(super) async fn set_backup_rules(
    ctx: &CallContext<'_>,
    mut p: Params,
) -> Result<Fields, ApiError> {
    let instance_id = p.string("InstanceId")?;
    let changes = RuleChanges::parse(&mut p)?;
    p.finish()?;
    let instance = authorize_instance(ctx, &instance_id).await?;
    let rule = changes.apply(current_rule(ctx, &instance.id).await?)?;
    ctx.catalog()
        .rules()
        .set(&rule, Timestamp::now())
        .await
        .map_err(crate::catalog_error)?;
    tracing::info!(
        instance = %instance.id,
        hour = rule.backup_hour,
        frequency = rule.frequency_hours,
        weekdays = %days_csv(&rule.active_weekdays),
        retention_days = rule.retention_days,
        "backup rule set"
    );
    to_fields(SetBackupRulesResponse {})
}
