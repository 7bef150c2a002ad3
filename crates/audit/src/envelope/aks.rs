//! AKS: audit Events in Azure diagnostic records.
//!
//! A diagnostic setting with category `kube-audit` (everything) or `kube-audit-admin`
//! (everything but get and list) sends each audit Event as `properties.log` of a record:
//! a JSON *string* holding the Event as Event Hubs and Storage write it, or the object
//! itself in some re-encodings. Event Hubs messages are `{"records":[...]}`; Storage blobs
//! (`insights-logs-kube-audit/.../PT1H.json`) hold one record per line. Other categories
//! (`kube-apiserver`, `guard`, `cluster-autoscaler`, ...) are skipped and counted. A body AKS
//! found too big is logged as the string `"skipped-too-big-size-object"`; it is read as
//! absent (see [`super::finish_event`]).

use super::{array, string, Cloud, Ctx, Origin, Piece};
use serde::Deserialize;
use serde_json::value::RawValue;

/// The cluster of an AKS resource ID (`/SUBSCRIPTIONS/.../MANAGEDCLUSTERS/NAME`), as Azure
/// wrote it (diagnostic records upper-case the whole ID).
pub fn cluster_of_resource_id(id: &str) -> Option<String> {
    let lower = id.to_ascii_lowercase();
    let at = lower.find("/managedclusters/")? + "/managedclusters/".len();
    let name = id[at..].split('/').next()?;
    (!name.is_empty()).then(|| name.to_string())
}

/// `properties` of a diagnostic record: only `log` is read.
#[derive(Deserialize, Default)]
pub(super) struct Properties<'a> {
    #[serde(borrow, default)]
    log: Option<&'a RawValue>,
}

/// An Event Hubs message body: `{"records":[...]}`.
pub(super) fn hub(ctx: &mut Ctx, top: &super::Top, path: &str) {
    let Some(records) = top.records else { return };
    match array(records, "records") {
        Ok(rs) => {
            if rs.is_empty() {
                ctx.skipped("AKS: Event Hubs messages with no records");
            }
            for (i, r) in rs.into_iter().enumerate() {
                let here = if path.is_empty() {
                    format!("records[{i}]")
                } else {
                    format!("{path}.records[{i}]")
                };
                match serde_json::from_str::<super::Top>(r.get()) {
                    Ok(top) => record(ctx, &top, &here),
                    Err(e) => ctx.malformed(format!("AKS {here}: not a diagnostic record: {e}")),
                }
            }
        }
        Err(e) => ctx.malformed(format!("AKS {e}")),
    }
}

/// One diagnostic record, already read into its classifying keys.
pub(super) fn record(ctx: &mut Ctx, top: &super::Top, path: &str) {
    let name = if path.is_empty() { "record" } else { path };
    if top.category.is_none() && top.metric_name.is_some() {
        // A diagnostic setting that also exports `AllMetrics` mixes metric records in.
        ctx.skipped("AKS: metric records (AllMetrics, not kube-audit)");
        return;
    }
    let Some(category) = string(top.category) else {
        ctx.malformed(format!("AKS {name}: category is missing or not a string"));
        return;
    };
    if !category.eq_ignore_ascii_case("kube-audit")
        && !category.eq_ignore_ascii_case("kube-audit-admin")
    {
        ctx.skipped(format!(
            "AKS: diagnostic records of category {category} (not kube-audit)"
        ));
        return;
    }
    let Some(log) = top.properties.as_ref().and_then(|p| p.log) else {
        ctx.malformed(format!(
            "AKS {name}: {category} record without properties.log"
        ));
        return;
    };
    let here = format!("{name}.properties.log");
    let json = match log.get().as_bytes().first() {
        Some(b'"') => match serde_json::from_str::<String>(log.get()) {
            Ok(s) => s.into_bytes(),
            Err(e) => {
                ctx.malformed(format!("AKS {here}: {e}"));
                return;
            }
        },
        Some(b'{') => log.get().as_bytes().to_vec(),
        _ => {
            ctx.malformed(format!("AKS {here}: neither a string nor an object"));
            return;
        }
    };
    let cluster = string(top.resource_id)
        .as_deref()
        .and_then(cluster_of_resource_id);
    ctx.out.push(Piece::Event {
        json,
        origin: Some(Origin::new(Cloud::Aks, cluster, here)),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_ids() {
        assert_eq!(
            cluster_of_resource_id("/SUBSCRIPTIONS/X/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/PROD").as_deref(),
            Some("PROD")
        );
        assert_eq!(
            cluster_of_resource_id("/subscriptions/x/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks-1").as_deref(),
            Some("aks-1")
        );
        assert_eq!(cluster_of_resource_id("/subscriptions/x"), None);
    }
}
