"""Tests of tripgrid.py: trip ends counted by place, clusters, and the box --bbox=auto proposes."""
import numpy as np

import tripgrid


def test_point_counts_merge_places_across_chunks():
    places = tripgrid.PointCounts()
    places.add(np.array([40.50001, 40.50009, 40.7]), np.array([-73.5, -73.5, -73.9]))
    places.add(np.array([40.7, -33.9]), np.array([-73.9, 151.2]))   # the south and east too
    lat, lon, counts = places.cells()
    assert sorted(zip(lat.tolist(), lon.tolist(), counts.tolist())) == [
        (-339000, 1512000, 1), (405000, -735000, 2), (407000, -739000, 2)]
    assert places.inside((40.4, 40.6, -74.0, -73.0)) == 2
    assert places.inside((40.5, 40.7, -73.9, -73.5)) == 0   # the upper edges are excluded


def test_clusters_link_touching_squares_only():
    step = round(tripgrid.LINK_DEGREES / tripgrid.RESOLUTION)   # a square's side in cells
    lat = np.array([0, step, 2 * step, 5 * step, 5 * step + 1])
    lon = np.array([0, step, 2 * step, 0, 0])
    labels = tripgrid.cluster_labels(lat, lon)
    assert labels[0] == labels[1] == labels[2] and labels[3] == labels[4] != labels[0]


def test_smallest_box_holds_the_share_in_the_least_area():
    # Four corner places and a busy centre: 98 of 101 trips need the centre and the corner of
    # weight 2 (lat 0, lon 10); any other pair of corners spans a larger box.
    lat, lon = np.array([0, 0, 10, 10, 5]), np.array([0, 10, 0, 10, 5])
    counts = np.array([1, 2, 1, 1, 96])
    assert tripgrid.smallest_box(lat, lon, counts, 0.95) == (5, 6, 5, 6)   # 96 of 101
    assert tripgrid.smallest_box(lat, lon, counts, 0.97) == (0, 6, 5, 11)
    assert tripgrid.smallest_box(lat, lon, counts, 1.0) == (0, 11, 0, 11)


def test_propose_box_keeps_to_the_busiest_cluster():
    starts, ends = tripgrid.PointCounts(), tripgrid.PointCounts()
    starts.add(np.array([34.05] * 8 + [34.06, 33.99]), np.array([-118.25] * 8 + [-118.24, -118.47]))
    ends.add(np.array([34.05, 33.99]), np.array([-118.25, -118.47]))
    bbox, facts = tripgrid.propose_box(starts, ends, 1.0)
    assert bbox == [34.05, 34.0601, -118.25, -118.2399]
    assert facts == {"share": 1.0, "clusters": 2, "busiest_cluster_starts": 9,
                     "starts_inside": 0.9, "ends_inside": 0.5}
