//! The DAG as inline SVG: one node per task, coloured by its status, and the edges as one path.

use dagy_store::TaskStatus;

use super::{clip, w};
use crate::escape::Html;
use crate::layout::{DAG_GEOMETRY, DagLayout, Geometry, Graph};

/// The most edges drawn; a flow with more (a dense all-to-all between two wide levels) is drawn
/// with the first ones and says how many were left out.
pub(crate) const MAX_EDGES: usize = 20_000;

/// The lines to draw for the edges, `(x1, y1, x2, y2)`, each once: from the bottom of the
/// dependency's level band to the top of the dependent's, at the nodes' centres. In a level
/// wrapped into rows, a node's edges meet the band's edge above its column instead of weaving
/// between the rows, so the edges between two wide levels collapse into a few lines.
pub(crate) fn edge_segments(
    graph: &Graph,
    layout: &DagLayout,
    g: &Geometry,
) -> Vec<(u32, u32, u32, u32)> {
    let end = |task: usize, bottom: bool| {
        let (x, _) = *layout.positions.get(task)?;
        let band = layout.bands.get(*layout.level_of.get(task)?)?;
        Some((
            x + g.node_w / 2,
            if bottom { band.y + band.height } else { band.y },
        ))
    };
    let mut segments: Vec<_> = graph
        .edges
        .iter()
        .filter_map(|&(from, to)| {
            let (x1, y1) = end(from, true)?;
            let (x2, y2) = end(to, false)?;
            Some((x1, y1, x2, y2))
        })
        .collect();
    segments.sort_unstable();
    segments.dedup();
    segments
}

/// The SVG of `graph` laid out as `layout`; `ids[i]` and `statuses[i]` are task `i`'s.
pub(crate) fn dag_svg(
    graph: &Graph,
    layout: &DagLayout,
    ids: &[&str],
    statuses: &[TaskStatus],
) -> String {
    let g: &Geometry = &DAG_GEOMETRY;
    let mut out = String::with_capacity(ids.len() * 170 + graph.edges.len().min(MAX_EDGES) * 36);
    w!(
        out,
        "<svg class=\"dag\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" \
         viewBox=\"0 0 {0} {1}\" role=\"img\" aria-label=\"The flow's tasks by level\">",
        layout.width,
        layout.height
    );
    let segments = edge_segments(graph, layout, g);
    if !segments.is_empty() {
        out.push_str("<path class=\"edges\" d=\"");
        let bend = g.level_gap / 2;
        for &(x1, y1, x2, y2) in segments.iter().take(MAX_EDGES) {
            w!(
                out,
                "M{x1} {y1}C{x1} {} {x2} {} {x2} {y2}",
                y1 + bend,
                y2.saturating_sub(bend)
            );
        }
        out.push_str("\"/>");
    }
    for (level, band) in layout.bands.iter().enumerate() {
        w!(
            out,
            "<text class=\"lvl\" x=\"4\" y=\"{}\">L{level}<title>level {level}: {} task{}</title></text>",
            band.y + g.node_h / 2 + 4,
            band.tasks,
            if band.tasks == 1 { "" } else { "s" }
        );
    }
    let max_chars = ((g.node_w - 14) / 7) as usize;
    for (i, id) in ids.iter().enumerate() {
        let (x, y) = layout.positions.get(i).copied().unwrap_or_default();
        let status = statuses.get(i).copied().unwrap_or(TaskStatus::Pending);
        let (label, clipped) = clip(id, max_chars);
        w!(
            out,
            "<g class=\"node status-{s}\" data-task-id=\"{id}\" data-status=\"{s}\" \
             transform=\"translate({x} {y})\"><rect width=\"{w}\" height=\"{h}\" rx=\"4\"/>\
             <text x=\"7\" y=\"{ty}\">{label}</text>",
            s = status.as_str(),
            id = Html(id),
            w = g.node_w,
            h = g.node_h,
            ty = g.node_h / 2 + 4,
            label = Html(&label),
        );
        if clipped {
            w!(out, "<title>{}</title>", Html(id));
        }
        out.push_str("</g>");
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::lay_out;

    fn graph() -> Graph {
        Graph {
            levels: vec![vec![0], vec![1, 2]],
            edges: vec![(0, 1), (0, 2)],
            problem: None,
        }
    }

    #[test]
    fn every_node_carries_its_id_and_status_for_scripts_and_tests() {
        let graph = graph();
        let layout = lay_out(&graph.levels, 3, &DAG_GEOMETRY);
        let svg = dag_svg(
            &graph,
            &layout,
            &["extract", "load", "report"],
            &[
                TaskStatus::Completed,
                TaskStatus::Running,
                TaskStatus::Pending,
            ],
        );
        assert!(svg.contains(
            "class=\"node status-completed\" data-task-id=\"extract\" data-status=\"completed\""
        ));
        assert!(svg.contains("data-task-id=\"load\" data-status=\"running\""));
        assert!(svg.contains("data-task-id=\"report\" data-status=\"pending\""));
        assert_eq!(svg.matches("<g class=\"node").count(), 3);
    }

    #[test]
    fn all_edges_are_one_path() {
        let graph = graph();
        let layout = lay_out(&graph.levels, 3, &DAG_GEOMETRY);
        let svg = dag_svg(&graph, &layout, &["a", "b", "c"], &[TaskStatus::Pending; 3]);
        assert_eq!(svg.matches("<path").count(), 1);
        assert_eq!(svg.matches('M').count(), 2);
    }

    #[test]
    fn edges_into_a_wrapped_level_meet_its_band_once_per_column() {
        // One task fanning out to 14: two full rows of six and a row of two.
        let graph = Graph {
            levels: vec![vec![0], (1..15).collect()],
            edges: (1..15).map(|i| (0, i)).collect(),
            problem: None,
        };
        let layout = lay_out(&graph.levels, 15, &DAG_GEOMETRY);
        let segments = edge_segments(&graph, &layout, &DAG_GEOMETRY);
        assert_eq!(segments.len(), 6, "one line per column, not per task");
        let top = layout.bands[1].y;
        assert!(segments.iter().all(|s| s.3 == top));
    }

    #[test]
    fn a_task_id_is_escaped_and_a_long_one_clipped_with_its_full_title() {
        let graph = Graph {
            levels: vec![vec![0]],
            edges: vec![],
            problem: None,
        };
        let layout = lay_out(&graph.levels, 1, &DAG_GEOMETRY);
        let id = "a_very_long_task_id_<b>_that_goes_on";
        let svg = dag_svg(&graph, &layout, &[id], &[TaskStatus::Failed]);
        assert!(!svg.contains("<b>"));
        assert!(svg.contains("data-task-id=\"a_very_long_task_id_&lt;b&gt;_that_goes_on\""));
        assert!(svg.contains("<title>a_very_long_task_id_&lt;b&gt;_that_goes_on</title>"));
        assert!(svg.contains('…'));
    }
}
