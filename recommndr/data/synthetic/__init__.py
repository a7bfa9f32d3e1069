"""A synthetic shop realistic enough that a model that works on it would work in a real one.

``generate(scale, out, seed)`` writes products, users and events in the dataset schema, and the
hidden ground truth (users' tastes and price tiers, planted complements, products' appeal) apart
from them in ``out/ground_truth/``; training never reads it, the offline A/B simulation does.

How it works (all vectorised with numpy; no Python loop over events):

* Catalogue (:mod:`.catalogue`): 12 top-level categories x 6 x 6 leaves (fewer at small scales),
  brands with Zipf-like shares and price premiums, log-normal prices per category, launch dates
  spread over three years before the period and through it (28% of products arrive during the
  year: cold-start items), a long-tailed base appeal, a launch boost that decays, slow ageing, and
  temporary trend bumps for 4% of products (trending items; popularity drifts over time).
* Shoppers (:mod:`.population`): 28% sign up during the year (cold-start users), exponential
  lifetimes (churn), log-normal activity, loyalty members, three taste leaves per user that
  often share a top-level category, a price tier (budget / mainstream / premium), a buying
  propensity.
* Sessions (:mod:`.sessions`): start times from a daily intensity with a weekly shape, a yearly
  shape, a gift season, Black Friday / Cyber Monday and a summer sale, and an hour-of-day profile;
  a session is about one of the user's tastes, or in the gift season more often a seasonal
  category; bounces and a long tail of views; add to cart by user, product and re-view;
  planted complements viewed and carted after their anchor; checkout or abandonment; quantities;
  consumables bought again after their category's cycle; no durable bought twice by one user.

Calibration targets, their sources, and what ``recommndr data profile`` measures on the ``full``
scale (seed 42; the README has the whole table beside the real Complete Journey data):

==========================================  ==========================================  ========
statistic                                   target and source                           full
==========================================  ==========================================  ========
sessions with a cart but no purchase        ~70%: Baymard Institute, average of 49      68.1%
                                            cart-abandonment studies (70.19%)
purchase per add-to-cart                    ~32%: RetailRocket public e-commerce data   31.2%
                                            (22,457 transactions / 69,332 carts)
add-to-cart per product view                2.5-5%: RetailRocket 2.6% over all          4.5%
                                            visitors; these are signed-in shoppers
sessions with a purchase                    2-5%: commonly reported e-commerce          4.5%
                                            conversion rates (2-3% of all visits)
events on the top 1% / 10% of products      Complete Journey (measured): 31.7% / 72.0%  26.4% /
                                                                                        68.7%
Gini of product popularity                  Complete Journey (measured): 0.81           0.79
events in November + December               ~19%: US National Retail Federation,        18.9%
                                            holiday season share of annual sales
weekday shape                               online peaks Sunday-Monday, dips Friday-    Sun 1.11
                                            Saturday (web-analytics benchmarks)         Sat 0.89
events per session (median / mean)          ~40-50% single-page sessions (e-commerce    3 / 4.1
                                            bounce-rate benchmarks); pages per visit
                                            around 4-5
purchase lines per basket (median)          1-2 for general merchandise (grocery is     1
                                            larger: Complete Journey median 5)
purchases of a product bought before        consumables repeat on 3-6 week cycles;      17.6%
                                            Complete Journey (all grocery) 40.9%
==========================================  ==========================================  ========
"""

from recommndr.data.synthetic.generator import GenerationSummary, generate

__all__ = ["GenerationSummary", "generate"]
