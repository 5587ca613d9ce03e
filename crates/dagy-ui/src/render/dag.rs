//! The DAG as inline SVG: one node per task, coloured by its status, and the edges as one path.

use dagy_store::TaskStatus;

use super::{clip, w};
use crate::escape::Html;
use crate::layout::{DAG_GEOMETRY, DagLayout, Geometry, Graph};

/// The most edges drawn; a flow with more (a dense all-to-all between two wide levels) is drawn
/// with the first ones and says how many were left out.
pub(crate) const MAX_EDGES: usize = 20_000;

/// How close a lane through a level may pass by a node's side, in pixels.
const LANE_CLEARANCE: u32 = 2;

/// An edge's route, top to bottom: it leaves the bottom of the dependency's level band at the
/// node's centre and ends on the top of the dependent's band at its centre. An edge that skips
/// levels crosses each level in between straight down a lane (a gap between two nodes or the
/// side of the level), so it never passes behind a node: the points are then, for each level
/// crossed, the lane's top and bottom. Between two consecutive points the edge is a curve inside
/// the gap between two levels (from an even index to the next) or a vertical line down a lane.
pub(crate) type Route = Vec<(u32, u32)>;

/// The x of the lanes through each level, sorted: beside each node, half a gap away, where no
/// node of any row of the level is.
fn lanes(layout: &DagLayout, g: &Geometry) -> Vec<Vec<u32>> {
    let mut xs: Vec<Vec<u32>> = vec![Vec::new(); layout.bands.len()];
    for (&(x, _), &level) in layout.positions.iter().zip(&layout.level_of) {
        if let Some(l) = xs.get_mut(level) {
            l.push(x);
        }
    }
    let half = g.gap_x / 2;
    xs.into_iter()
        .map(|mut nodes| {
            nodes.sort_unstable();
            nodes.dedup();
            let free = |c: u32| {
                nodes
                    .iter()
                    .all(|&x| c + LANE_CLEARANCE <= x || c >= x + g.node_w + LANE_CLEARANCE)
            };
            let mut lanes: Vec<u32> = nodes
                .iter()
                .flat_map(|&x| [x.saturating_sub(half), x + g.node_w + half])
                .filter(|&c| free(c))
                .collect();
            lanes.sort_unstable();
            lanes.dedup();
            lanes
        })
        .collect()
}

/// The lane of `lanes` nearest to `x` (the first of two as near), or `x` when there is none.
fn nearest(lanes: &[u32], x: u32) -> u32 {
    let i = lanes.partition_point(|&l| l < x);
    match (i.checked_sub(1).and_then(|j| lanes.get(j)), lanes.get(i)) {
        (Some(&below), Some(&above)) if x - below <= above - x => below,
        (_, Some(&above)) => above,
        (Some(&below), None) => below,
        (None, None) => x,
    }
}

/// The routes of the edges, each once. In a level wrapped into rows, a node's edges meet the
/// band's edge above its column instead of weaving between the rows, so the edges between two
/// wide levels collapse into a few lines. An edge that skips levels takes, through each level
/// it crosses, the lane nearest to the straight line between its ends.
pub(crate) fn edge_routes(graph: &Graph, layout: &DagLayout, g: &Geometry) -> Vec<Route> {
    let skips = graph.edges.iter().any(|&(from, to)| {
        let level = |t: usize| layout.level_of.get(t).copied().unwrap_or(0);
        level(to) > level(from) + 1
    });
    let lanes = if skips { lanes(layout, g) } else { Vec::new() };
    let end = |task: usize| {
        let (x, _) = *layout.positions.get(task)?;
        let level = *layout.level_of.get(task)?;
        Some((x + g.node_w / 2, level, layout.bands.get(level)?))
    };
    let mut routes: Vec<Route> = graph
        .edges
        .iter()
        .filter_map(|&(from, to)| {
            let (x1, l1, b1) = end(from)?;
            let (x2, l2, b2) = end(to)?;
            let mut route = Vec::with_capacity(2 * l2.saturating_sub(l1).max(1));
            route.push((x1, b1.y + b1.height));
            let span = l2.saturating_sub(l1) as i64;
            for level in l1 + 1..l2 {
                let band = layout.bands.get(level)?;
                let k = (level - l1) as i64;
                let target = (i64::from(x1) + (i64::from(x2) - i64::from(x1)) * k / span) as u32;
                let lane = nearest(lanes.get(level).map_or(&[][..], Vec::as_slice), target);
                route.push((lane, band.y));
                route.push((lane, band.y + band.height));
            }
            route.push((x2, b2.y));
            Some(route)
        })
        .collect();
    routes.sort_unstable();
    routes.dedup();
    routes
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
    let routes = edge_routes(graph, layout, g);
    if !routes.is_empty() {
        out.push_str("<path class=\"edges\" d=\"");
        let bend = g.level_gap / 2;
        for route in routes.iter().take(MAX_EDGES) {
            let Some(&(x, y)) = route.first() else {
                continue;
            };
            w!(out, "M{x} {y}");
            for (i, pair) in route.windows(2).enumerate() {
                let ((x1, y1), (x2, y2)) = (pair[0], pair[1]);
                if i % 2 == 0 {
                    w!(
                        out,
                        "C{x1} {} {x2} {} {x2} {y2}",
                        y1 + bend,
                        y2.saturating_sub(bend)
                    );
                } else {
                    w!(out, "V{y2}");
                }
            }
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
        let routes = edge_routes(&graph, &layout, &DAG_GEOMETRY);
        assert_eq!(routes.len(), 6, "one line per column, not per task");
        let top = layout.bands[1].y;
        assert!(routes.iter().all(|r| r.len() == 2 && r[1].1 == top));
    }

    /// Whether the open rectangles `a` and `b`, `(left, top, right, bottom)`, overlap.
    fn overlap(a: (u32, u32, u32, u32), b: (u32, u32, u32, u32)) -> bool {
        a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3
    }

    /// Every piece of every route, by the box that holds it (a curve with vertical tangents lies
    /// in the box of its ends), misses every node but the edge's own two.
    fn assert_no_edge_behind_a_node(graph: &Graph, layout: &DagLayout) {
        let g = &DAG_GEOMETRY;
        let routes = edge_routes(graph, layout, g);
        let node = |t: usize| {
            let (x, y) = layout.positions[t];
            (x, y, x + g.node_w, y + g.node_h)
        };
        for &(from, to) in &graph.edges {
            let (x1, x2) = (node(from).0 + g.node_w / 2, node(to).0 + g.node_w / 2);
            let route = routes
                .iter()
                .find(|r| {
                    r[0].0 == x1 && r[r.len() - 1].0 == x2 && {
                        let (b1, b2) = (
                            layout.bands[layout.level_of[from]],
                            layout.bands[layout.level_of[to]],
                        );
                        r[0].1 == b1.y + b1.height && r[r.len() - 1].1 == b2.y
                    }
                })
                .expect("every edge has a route");
            for pair in route.windows(2) {
                let ((ax, ay), (bx, by)) = (pair[0], pair[1]);
                let piece = (
                    ax.min(bx),
                    ay.min(by),
                    ax.max(bx).max(ax.min(bx) + 1),
                    ay.max(by),
                );
                for t in (0..layout.positions.len()).filter(|&t| t != from && t != to) {
                    assert!(
                        !overlap(piece, node(t)),
                        "edge {from}->{to} passes behind node {t}: {route:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn an_edge_that_skips_levels_goes_around_the_nodes_between() {
        // The README's flow: extract_customers -> join_sales skips clean_orders' level, and
        // would run straight down behind it.
        let spec = dagy_core::FlowBuilder::new("nightly_sales")
            .task("extract_orders", "h", |t| t)
            .task("extract_customers", "h", |t| t)
            .task("extract_products", "h", |t| t)
            .task("clean_orders", "h", |t| t.depends_on(["extract_orders"]))
            .task("join_sales", "h", |t| {
                t.depends_on(["clean_orders", "extract_customers", "extract_products"])
            })
            .task("validate_totals", "h", |t| t.depends_on(["join_sales"]))
            .task("quality_metrics", "h", |t| t.depends_on(["join_sales"]))
            .task("load_warehouse", "h", |t| t.depends_on(["validate_totals"]))
            .task("notify_team", "h", |t| t.depends_on(["quality_metrics"]))
            .task("refresh_reports", "h", |t| {
                t.depends_on(["load_warehouse", "join_sales"])
            })
            .build();
        let graph = crate::layout::graph_of(&spec);
        let layout = lay_out(&graph.levels, spec.tasks.len(), &DAG_GEOMETRY);
        assert_no_edge_behind_a_node(&graph, &layout);
        let skipping = edge_routes(&graph, &layout, &DAG_GEOMETRY)
            .into_iter()
            .filter(|r| r.len() > 2)
            .count();
        assert_eq!(skipping, 3, "three edges skip levels and go round");

        // examples/flows/etl.json: transform -> load, past validate.
        let etl = dagy_core::FlowBuilder::new("etl")
            .task("extract", "h", |t| t)
            .task("transform", "h", |t| t.depends_on(["extract"]))
            .task("validate", "h", |t| t.depends_on(["transform"]))
            .task("load", "h", |t| t.depends_on(["transform", "validate"]))
            .build();
        let graph = crate::layout::graph_of(&etl);
        let layout = lay_out(&graph.levels, 4, &DAG_GEOMETRY);
        assert_no_edge_behind_a_node(&graph, &layout);
    }

    #[test]
    fn a_lane_through_a_wrapped_level_misses_every_row() {
        // 0 -> 1..=11 (a full row of six and a row of five, offset by half a node) -> 12, and
        // 0 -> 12 straight past them all; then a chain past a long run of levels.
        let mut edges: Vec<(usize, usize)> = (1..12).flat_map(|i| [(0, i), (i, 12)]).collect();
        edges.push((0, 12));
        let graph = Graph {
            levels: vec![vec![0], (1..12).collect(), vec![12]],
            edges,
            problem: None,
        };
        let layout = lay_out(&graph.levels, 13, &DAG_GEOMETRY);
        assert_no_edge_behind_a_node(&graph, &layout);

        let graph = Graph {
            levels: (0..6).map(|l| vec![l]).collect(),
            edges: (0..5).map(|l| (l, l + 1)).chain([(0, 5), (1, 4)]).collect(),
            problem: None,
        };
        let layout = lay_out(&graph.levels, 6, &DAG_GEOMETRY);
        assert_no_edge_behind_a_node(&graph, &layout);
    }

    #[test]
    fn the_nearest_lane_is_chosen() {
        assert_eq!(nearest(&[10, 50, 90], 60), 50);
        assert_eq!(nearest(&[10, 50, 90], 70), 50, "a tie goes to the left");
        assert_eq!(nearest(&[10, 50, 90], 0), 10);
        assert_eq!(nearest(&[10, 50, 90], 200), 90);
        assert_eq!(nearest(&[], 7), 7);
    }

    #[test]
    fn an_edge_skipping_a_level_is_drawn_down_a_lane() {
        let graph = Graph {
            levels: vec![vec![0], vec![1], vec![2]],
            edges: vec![(0, 1), (1, 2), (0, 2)],
            problem: None,
        };
        let layout = lay_out(&graph.levels, 3, &DAG_GEOMETRY);
        let svg = dag_svg(&graph, &layout, &["a", "b", "c"], &[TaskStatus::Pending; 3]);
        assert_eq!(svg.matches('M').count(), 3);
        assert_eq!(svg.matches('V').count(), 1);
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
